// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_thin: the part of KVM that is loaded once and never replaced.  It owns /dev/kvm
 * and every one-of-a-kind hook and per-CPU hardware state that KVM needs, and lets
 * several KVM cores (kvm_core_<tag> + kvm_{intel,amd}_core_<tag>) run side by side.
 *
 * A core registers itself when its kvm_init() calls misc_register() for /dev/kvm; the
 * core's objects are built with kvm_core/klu_shim.h, which turns that call into
 * klu_thin<ABI>_misc_register().
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ctype.h>
#include <linux/kallsyms.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

#include "thin.h"

/* Protects klu_cores and writes to klu_active; /dev/kvm reads klu_active under RCU. */
DEFINE_MUTEX(klu_cores_lock);
LIST_HEAD(klu_cores);
static struct klu_core __rcu *klu_active;

static const char *tag_of(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);

	if (strncmp(name, prefix, n) || !name[n])
		return NULL;
	return name + n;
}

/*
 * A core tag: a lower-case letter, then lower-case letters, digits and '_', at most
 * KLU_TAG_MAX - 1 in all.  Starting with a letter, no tag reads as a VM id.
 */
bool klu_tag_ok(const char *tag)
{
	size_t i, n = strnlen(tag, KLU_TAG_MAX);

	if (!n || n >= KLU_TAG_MAX || !islower(tag[0]))
		return false;
	for (i = 1; i < n; i++)
		if (!islower(tag[i]) && !isdigit(tag[i]) && tag[i] != '_')
			return false;
	return true;
}

/*
 * The name of the module that holds text address @addr, or "" for the kernel proper.
 * 6.1 exports no address-to-module lookup; the symbol printer names the module.
 */
void klu_module_name(unsigned long addr, char *name, size_t len)
{
	char buf[KSYM_SYMBOL_LEN];
	char *open, *close;

	sprint_symbol(buf, addr);
	open = strrchr(buf, '[');
	close = open ? strchr(open, ']') : NULL;
	name[0] = 0;
	if (open && close) {
		*close = 0;
		strscpy(name, open + 1, len);
	}
}

struct klu_core *klu_core_by_tag(const char *tag)
{
	struct klu_core *core;

	lockdep_assert_held(&klu_cores_lock);
	list_for_each_entry(core, &klu_cores, node)
		if (!strcmp(core->tag, tag))
			return core;
	return NULL;
}

struct klu_core *klu_core_active_locked(void)
{
	return rcu_dereference_protected(klu_active, lockdep_is_held(&klu_cores_lock));
}

/*
 * The core that answers /dev/kvm, with a reference on its vendor module (which owns its
 * file operations and depends on its generic module), or NULL.
 */
struct klu_core *klu_core_get_active(void)
{
	struct klu_core *core;

	rcu_read_lock();
	core = rcu_dereference(klu_active);
	if (core && !try_module_get(core->vendor))
		core = NULL;
	rcu_read_unlock();
	return core;
}

void klu_core_put(struct klu_core *core)
{
	module_put(core->vendor);
}

int klu_core_set_active(struct klu_core *core)
{
	lockdep_assert_held(&klu_cores_lock);
	rcu_assign_pointer(klu_active, core);
	if (core)
		pr_info("core %s (KVM %s) is now active for new VMs\n", core->tag,
			core->vendor->version ?: "?");
	return 0;
}

int KLU_THIN(misc_register)(struct miscdevice *misc)
{
	struct module *vendor = misc->fops->owner;
	char generic[MODULE_NAME_LEN];
	struct klu_core *core;
	const char *tag, *vtag;
	int r;

	/* kvm_init() runs in the core's generic module, called by the vendor module. */
	klu_module_name((unsigned long)misc->fops->unlocked_ioctl, generic, sizeof(generic));
	tag = tag_of(generic, "kvm_core_");
	vtag = vendor ? tag_of(vendor->name, "kvm_intel_core_") ?:
			tag_of(vendor->name, "kvm_amd_core_") : NULL;
	if (strcmp(misc->name, "kvm")) {
		pr_err("refusing misc device '%s': kvm_thin only stands in for /dev/kvm\n",
		       misc->name);
		return -EINVAL;
	}
	if (!tag || !vtag || strcmp(tag, vtag) || !klu_tag_ok(tag)) {
		pr_err("refusing core %s + %s: modules must be kvm_core_<tag> and kvm_{intel,amd}_core_<tag> with one tag: a lower-case letter, then letters, digits and _, at most %d characters\n",
		       generic[0] ? generic : "?", vendor ? vendor->name : "?",
		       KLU_TAG_MAX - 1);
		return -EINVAL;
	}

	core = kzalloc(sizeof(*core), GFP_KERNEL);
	if (!core)
		return -ENOMEM;
	strscpy(core->tag, tag, sizeof(core->tag));
	core->misc = misc;
	core->fops = misc->fops;
	core->vendor = vendor;
	strscpy(core->generic, generic, sizeof(core->generic));

	mutex_lock(&klu_cores_lock);
	if (klu_core_by_tag(tag)) {
		mutex_unlock(&klu_cores_lock);
		pr_err("refusing core %s: a core with tag '%s' is already loaded\n",
		       generic, tag);
		kfree(core);
		return -EEXIST;
	}
	r = klu_sysfs_add_core(core);
	if (r) {
		mutex_unlock(&klu_cores_lock);
		pr_err("core %s: sysfs registration failed (%d)\n", tag, r);
		return r;	/* the kobject release frees core */
	}
	klu_exports_resolve(core);
	list_add_tail(&core->node, &klu_cores);
	if (!klu_core_active_locked())
		klu_core_set_active(core);
	mutex_unlock(&klu_cores_lock);

	/* KVM's VM create/destroy uevents go out on /dev/kvm, as they do without thin. */
	misc->this_device = klu_thin_misc_device();
	pr_info("core %s loaded: %s + %s, KVM %s\n", tag, generic, vendor->name,
		vendor->version ?: "?");
	return 0;
}
EXPORT_SYMBOL_GPL(KLU_THIN(misc_register));

void KLU_THIN(misc_deregister)(struct miscdevice *misc)
{
	struct klu_core *core, *next = NULL;

	mutex_lock(&klu_cores_lock);
	list_for_each_entry(core, &klu_cores, node)
		if (core->misc == misc)
			break;
	if (list_entry_is_head(core, &klu_cores, node)) {
		mutex_unlock(&klu_cores_lock);
		WARN(1, "kvm_thin: deregistering an unknown core\n");
		return;
	}
	list_del(&core->node);
	if (klu_core_active_locked() == core) {
		/* Fall back to the most recently loaded core, if any. */
		if (!list_empty(&klu_cores))
			next = list_last_entry(&klu_cores, struct klu_core, node);
		klu_core_set_active(next);
		if (!next)
			pr_info("no core left: /dev/kvm answers -ENODEV until one loads\n");
	}
	mutex_unlock(&klu_cores_lock);
	klu_owner_forget_core(core);
	/* Nobody reaches the core through klu_active or a VM's owner once readers are done. */
	synchronize_rcu();
	misc->this_device = NULL;
	pr_info("core %s unloaded\n", core->tag);
	klu_sysfs_del_core(core);
}
EXPORT_SYMBOL_GPL(KLU_THIN(misc_deregister));

static int __init klu_thin_init(void)
{
	int r;

	r = klu_sysfs_init();
	if (r)
		return r;
	r = klu_uret_init();
	if (r)
		goto out_sysfs;
	r = klu_svm_init();
	if (r)
		goto out_uret;
	r = klu_vmx_init();
	if (r)
		goto out_svm;
	r = klu_pi_init();
	if (r)
		goto out_vmx;
	r = klu_hooks_init();
	if (r)
		goto out_pi;
	r = klu_dev_init();
	if (r)
		goto out_hooks;
	klu_unload_init();
	pr_info("ready (core ABI %d)\n", KLU_THIN_ABI);
	return 0;

out_hooks:
	klu_hooks_exit();
out_pi:
	klu_pi_exit();
out_vmx:
	klu_vmx_exit();
out_svm:
	klu_svm_exit();
out_uret:
	klu_uret_exit();
out_sysfs:
	klu_sysfs_exit();
	return r;
}

/* Every core depends on kvm_thin's symbols, so none is loaded when this runs. */
static void __exit klu_thin_exit(void)
{
	klu_unload_exit();
	klu_dev_exit();
	klu_hooks_exit();
	klu_pi_exit();
	klu_vmx_exit();
	klu_svm_exit();
	klu_uret_exit();
	klu_sysfs_exit();
}

module_init(klu_thin_init);
module_exit(klu_thin_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kvm-live-upgrade: /dev/kvm and shared hardware state for KVM cores");
MODULE_INFO(klu_thin_abi, __stringify(KLU_THIN_ABI));
