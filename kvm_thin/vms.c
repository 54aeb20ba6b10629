// SPDX-License-Identifier: GPL-2.0
/*
 * The VM registry: every VM of every core, in /sys/kernel/kvm_thin/vms/<id>/ with the
 * core that runs it, the process that created it and its vCPU count.  A live move
 * works from this list.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kobject.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/sysfs.h>

#include "thin.h"

struct klu_vm {
	struct list_head node;
	struct kobject kobj;
	struct kvm *kvm;		/* NULL once the core destroys it */
	int (*nr_vcpus)(struct kvm *kvm);
	char tag[KLU_TAG_MAX];
	pid_t pid;
};

static DEFINE_MUTEX(klu_vms_lock);	/* protects klu_vms and each klu_vm's kvm */
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
	return sysfs_emit(buf, "%s\n", to_vm(kobj)->tag);
}

static ssize_t vcpus_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct klu_vm *vm = to_vm(kobj);
	ssize_t n = -ENODEV;

	mutex_lock(&klu_vms_lock);
	if (vm->kvm)
		n = sysfs_emit(buf, "%d\n", vm->nr_vcpus(vm->kvm));
	mutex_unlock(&klu_vms_lock);
	return n;
}

static struct kobj_attribute pid_attr = __ATTR_RO(pid);
static struct kobj_attribute core_attr = __ATTR_RO(core);
static struct kobj_attribute vcpus_attr = __ATTR_RO(vcpus);

static struct attribute *klu_vm_attrs[] = {
	&pid_attr.attr,
	&core_attr.attr,
	&vcpus_attr.attr,
	NULL,
};
ATTRIBUTE_GROUPS(klu_vm);

static void klu_vm_release(struct kobject *kobj)
{
	kfree(to_vm(kobj));
}

static struct kobj_type klu_vm_ktype = {
	.release = klu_vm_release,
	.sysfs_ops = &kobj_sysfs_ops,
	.default_groups = klu_vm_groups,
};

void KLU_THIN(vm_created)(struct kvm *kvm, const char *tag,
			  int (*nr_vcpus)(struct kvm *kvm))
{
	struct klu_vm *vm;
	int r;

	vm = kzalloc(sizeof(*vm), GFP_KERNEL);
	if (!vm)	/* the VM runs; it is only missing from sysfs */
		return;
	strscpy(vm->tag, tag, sizeof(vm->tag));
	vm->kvm = kvm;
	vm->nr_vcpus = nr_vcpus;
	vm->pid = task_tgid_nr(current);
	vm->kobj.kset = klu_vms_kset;

	mutex_lock(&klu_vms_lock);
	r = kobject_init_and_add(&vm->kobj, &klu_vm_ktype, NULL, "%lu", klu_vm_next_id++);
	if (r) {
		mutex_unlock(&klu_vms_lock);
		pr_warn("VM of pid %d on core %s: no sysfs entry (%d)\n", vm->pid, vm->tag, r);
		kobject_put(&vm->kobj);
		return;
	}
	list_add_tail(&vm->node, &klu_vms);
	mutex_unlock(&klu_vms_lock);
}
EXPORT_SYMBOL_GPL(KLU_THIN(vm_created));

void KLU_THIN(vm_destroyed)(struct kvm *kvm)
{
	struct klu_vm *vm, *found = NULL;

	mutex_lock(&klu_vms_lock);
	list_for_each_entry(vm, &klu_vms, node) {
		if (vm->kvm == kvm) {
			list_del(&vm->node);
			vm->kvm = NULL;
			found = vm;
			break;
		}
	}
	mutex_unlock(&klu_vms_lock);
	if (found)
		kobject_put(&found->kobj);
}
EXPORT_SYMBOL_GPL(KLU_THIN(vm_destroyed));

/* The number of VMs on core @tag and their vCPUs. */
void klu_vms_count(const char *tag, int *vms, int *vcpus)
{
	struct klu_vm *vm;

	*vms = 0;
	*vcpus = 0;
	mutex_lock(&klu_vms_lock);
	list_for_each_entry(vm, &klu_vms, node) {
		if (strcmp(vm->tag, tag))
			continue;
		(*vms)++;
		*vcpus += vm->nr_vcpus(vm->kvm);
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
