// SPDX-License-Identifier: GPL-2.0
/*
 * The VM registry: every VM of every core, as kvm_thin's own object, in
 * /sys/kernel/kvm_thin/vms/<id>/ with the core that runs it, the process that created it,
 * its vCPU count and the outcome of its last move.  A VM lives while any of its VM,
 * vCPU or device files is open; struct kvm stays the core's business.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/file.h>
#include <linux/kobject.h>
#include <linux/kthread.h>
#include <linux/sched.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/sysfs.h>

#include "thin.h"

static DEFINE_MUTEX(klu_vms_lock);	/* protects klu_vms */
static LIST_HEAD(klu_vms);
static struct kset *klu_vms_kset;
static unsigned long klu_vm_next_id;

#define to_vm(k) container_of(k, struct klu_vm, kobj)

static ssize_t pid_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", to_vm(kobj)->pid);
}

static ssize_t core_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct klu_vm *vm = to_vm(kobj);
	ssize_t n;

	spin_lock(&vm->record_lock);
	n = sysfs_emit(buf, "%s\n", vm->core_tag);
	spin_unlock(&vm->record_lock);
	return n;
}

static ssize_t vcpus_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", READ_ONCE(to_vm(kobj)->nr_vcpus));
}

static ssize_t movable_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct klu_vm *vm = to_vm(kobj);
	ssize_t n;

	mutex_lock(&vm->files_lock);
	n = sysfs_emit(buf, "%s\n", vm->unmovable[0] ? vm->unmovable : "yes");
	mutex_unlock(&vm->files_lock);
	return n;
}

static ssize_t last_move_show(struct kobject *kobj, struct kobj_attribute *attr,
			      char *buf)
{
	struct klu_vm *vm = to_vm(kobj);
	ssize_t n;

	spin_lock(&vm->record_lock);
	if (!vm->move_from[0])
		n = sysfs_emit(buf, "none\n");
	else
		n = sysfs_emit(buf,
			       "%s from=%s to=%s step=%s error=%d blackout_ns=%llu quiesce_ns=%llu rebuild_ns=%llu state_ns=%llu commit_ns=%llu irqbypass_kept=%u irqbypass_fallback=%u pi_handed=%u\n",
			       vm->move_result ? "failed" : "ok", vm->move_from,
			       vm->move_to, vm->move_step, vm->move_result,
			       vm->blackout_ns, vm->quiesce_ns, vm->rebuild_ns,
			       vm->state_ns, vm->commit_ns, vm->bypass_kept,
			       vm->bypass_fallback, vm->pi_handed);
	spin_unlock(&vm->record_lock);
	return n;
}

static struct kobj_attribute pid_attr = __ATTR_RO(pid);
static struct kobj_attribute core_attr = __ATTR_RO(core);
static struct kobj_attribute vcpus_attr = __ATTR_RO(vcpus);
static struct kobj_attribute movable_attr = __ATTR_RO(movable);
static struct kobj_attribute last_move_attr = __ATTR_RO(last_move);

static struct attribute *klu_vm_attrs[] = {
	&pid_attr.attr,
	&core_attr.attr,
	&vcpus_attr.attr,
	&movable_attr.attr,
	&last_move_attr.attr,
	NULL,
};
ATTRIBUTE_GROUPS(klu_vm);

static void klu_vm_release(struct kobject *kobj)
{
	struct klu_vm *vm = to_vm(kobj);

	mutex_lock(&klu_vms_lock);
	list_del(&vm->node);
	mutex_unlock(&klu_vms_lock);
	if (vm->kvm && !vm->has_device)
		klu_owner_del(vm->kvm, vm);
	klu_journal_free(&vm->journal);
	xa_destroy(&vm->slots);
	klu_dirty_free(vm);
	mmdrop(vm->mm);
	kfree(vm);
}

static struct kobj_type klu_vm_ktype = {
	.release = klu_vm_release,
	.sysfs_ops = &kobj_sysfs_ops,
	.default_groups = klu_vm_groups,
};

/* A VM that KVM_CREATE_VM just made on @core, for the calling process. */
struct klu_vm *klu_vm_new(struct klu_core *core, unsigned long type)
{
	struct klu_vm *vm;
	int r;

	vm = kzalloc(sizeof(*vm), GFP_KERNEL_ACCOUNT);
	if (!vm)
		return NULL;
	init_rwsem(&vm->lock);
	mutex_init(&vm->files_lock);
	INIT_LIST_HEAD(&vm->files);
	INIT_LIST_HEAD(&vm->journal);
	INIT_LIST_HEAD(&vm->stats);
	xa_init(&vm->slots);
	mutex_init(&vm->dirty_lock);
	xa_init(&vm->dirty);
	init_waitqueue_head(&vm->wq);
	spin_lock_init(&vm->record_lock);
	vm->core = core;
	strscpy(vm->core_tag, core->tag, sizeof(vm->core_tag));
	vm->type = type;
	vm->pid = task_tgid_nr(current);
	vm->mm = current->mm;
	mmgrab(vm->mm);
	vm->kobj.kset = klu_vms_kset;

	mutex_lock(&klu_vms_lock);
	vm->id = klu_vm_next_id++;
	list_add_tail(&vm->node, &klu_vms);
	r = kobject_init_and_add(&vm->kobj, &klu_vm_ktype, NULL, "%lu", vm->id);
	mutex_unlock(&klu_vms_lock);
	if (r) {
		pr_warn("VM of pid %d on core %s: no sysfs entry (%d)\n", vm->pid,
			core->tag, r);
		kobject_put(&vm->kobj);
		return NULL;
	}
	return vm;
}

void klu_vm_get(struct klu_vm *vm)
{
	kobject_get(&vm->kobj);
}

void klu_vm_put(struct klu_vm *vm)
{
	kobject_put(&vm->kobj);
}

/*
 * @vm cannot move from now on: "movable" says "no: <why>" and the log says so once.  The
 * first reason stays, but for @dead: the VM lost state and cannot run right either, so
 * every ioctl of its files fails with EIO from now on (as a VM that KVM finds broken),
 * its VMM stops it, and "movable" says why.  Under files_lock.
 */
void klu_vm_refuse(struct klu_vm *vm, bool dead, const char *fmt, ...)
{
	char why[sizeof(vm->unmovable)];
	va_list ap;

	lockdep_assert_held(&vm->files_lock);
	if (vm->unmovable[0] && !dead)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (dead) {
		struct klu_file *kf;

		WRITE_ONCE(vm->dead, true);
		snprintf(vm->unmovable, sizeof(vm->unmovable), "no: dead: %s", why);
		pr_err("VM %lu (pid %d): %s: every ioctl of the VM fails with EIO from now on\n",
		       vm->id, vm->pid, why);
		/* vCPUs in the guest come out, and their next KVM_RUN fails */
		list_for_each_entry(kf, &vm->files, node)
			if (kf->kind == KLU_FILE_VCPU)
				klu_vcpu_kick(kf);
		return;
	}
	snprintf(vm->unmovable, sizeof(vm->unmovable), "no: %s", why);
	pr_info("VM %lu (pid %d): unmovable from now on: %s\n", vm->id, vm->pid,
		vm->unmovable);
}

/* @kf joins @vm, and holds a reference on it that its owner drops after del_file. */
void klu_vm_add_file(struct klu_vm *vm, struct klu_file *kf)
{
	klu_vm_get(vm);
	kf->vm = vm;
	mutex_lock(&vm->files_lock);
	list_add_tail(&kf->node, &vm->files);
	if (kf->kind == KLU_FILE_VCPU)
		WRITE_ONCE(vm->nr_vcpus, vm->nr_vcpus + 1);
	mutex_unlock(&vm->files_lock);
}

void klu_vm_del_file(struct klu_vm *vm, struct klu_file *kf)
{
	mutex_lock(&vm->files_lock);
	list_del(&kf->node);
	if (kf->kind == KLU_FILE_VCPU)
		WRITE_ONCE(vm->nr_vcpus, vm->nr_vcpus - 1);
	mutex_unlock(&vm->files_lock);
}

/*
 * Close the core files on @dead (struct klu_grave), in a context that has the VMM's mm:
 * a VMX VM's private memory slots are unmapped from current->mm.  A kthread that uses
 * the mm (the mover) closes with __fput_sync(): its fput() would hand the last close
 * to a worker, which has no mm.
 */
void klu_close_graves(struct list_head *dead)
{
	struct klu_grave *g, *next;

	list_for_each_entry_safe(g, next, dead, node) {
		list_del(&g->node);
		if (current->flags & PF_KTHREAD)
			__fput_sync(g->file);
		else
			fput(g->file);
		kfree(g);
	}
}

struct klu_late {
	struct mm_struct *mm;
	struct list_head graves;
};

static int klu_late_thread(void *data)
{
	struct klu_late *late = data;
	bool mm = mmget_not_zero(late->mm);

	set_user_nice(current, 10);	/* as the mover's teardown: the vCPUs first */
	if (mm)
		kthread_use_mm(late->mm);
	klu_close_graves(&late->graves);
	if (mm) {
		kthread_unuse_mm(late->mm);
		mmput(late->mm);
	}
	mmdrop(late->mm);
	kfree(late);
	return 0;
}

/*
 * Close @files (@n, NULLs skipped) in a kernel thread of their own, with @vm's mm, as
 * the mover closes an old VM: a vCPU thread that drops the last reference to an old
 * core's VM (completing an exit left to it, after a move) would tear that VM down on
 * its way back into the guest, which would pause the guest for as long.
 */
void klu_close_later(struct klu_vm *vm, struct file **files, int n)
{
	struct klu_late *late = kzalloc(sizeof(*late), GFP_KERNEL);
	struct task_struct *t;
	struct klu_grave *g;
	int i;

	if (late)
		INIT_LIST_HEAD(&late->graves);
	for (i = 0; late && i < n; i++) {
		if (!files[i])
			continue;
		g = kzalloc(sizeof(*g), GFP_KERNEL);
		if (!g) {
			fput(files[i]);		/* here, then */
			continue;
		}
		g->file = files[i];
		list_add_tail(&g->node, &late->graves);
	}
	if (!late) {
		for (i = 0; i < n; i++)
			if (files[i])
				fput(files[i]);
		return;
	}
	late->mm = vm->mm;
	mmgrab(late->mm);
	t = kthread_run(klu_late_thread, late, "klu-close-%lu", vm->id);
	if (IS_ERR(t)) {
		klu_close_graves(&late->graves);
		mmdrop(late->mm);
		kfree(late);
	}
}

/*
 * Call @fn on every VM, with a reference held, until it returns non-zero.  New VMs that
 * appear meanwhile may or may not be visited.
 */
int klu_vms_for_each(int (*fn)(struct klu_vm *vm, void *data), void *data)
{
	struct klu_vm *vm, *prev = NULL;
	unsigned long next_id = 0;
	int r = 0;

	for (;;) {
		mutex_lock(&klu_vms_lock);
		list_for_each_entry(vm, &klu_vms, node)
			if (vm->id >= next_id && kobject_get_unless_zero(&vm->kobj))
				break;
		mutex_unlock(&klu_vms_lock);
		if (prev)
			klu_vm_put(prev);
		if (list_entry_is_head(vm, &klu_vms, node))
			return r;
		next_id = vm->id + 1;
		prev = vm;
		r = fn(vm, data);
		if (r) {
			klu_vm_put(vm);
			return r;
		}
	}
}

/* The number of VMs on core @tag and their vCPUs. */
void klu_vms_count(const char *tag, int *vms, int *vcpus)
{
	struct klu_vm *vm;

	*vms = 0;
	*vcpus = 0;
	mutex_lock(&klu_vms_lock);
	list_for_each_entry(vm, &klu_vms, node) {
		if (strcmp(READ_ONCE(vm->core)->tag, tag))
			continue;
		(*vms)++;
		*vcpus += READ_ONCE(vm->nr_vcpus);
	}
	mutex_unlock(&klu_vms_lock);
}

int klu_vms_init(struct kobject *parent)
{
	klu_vms_kset = kset_create_and_add("vms", NULL, parent);
	return klu_vms_kset ? 0 : -ENOMEM;
}

void klu_vms_exit(void)
{
	kset_unregister(klu_vms_kset);
}
