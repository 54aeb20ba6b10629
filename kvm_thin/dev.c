// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/kvm.  kvm_thin holds the one misc minor and hands each system ioctl to the core
 * that is active for new VMs.  The VM file KVM_CREATE_VM returns is kvm_thin's, standing
 * in for the core's (files.c); the core's file keeps a reference on the core, so a core
 * with VMs cannot be unloaded.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/compat.h>
#include <linux/fs.h>
#include <linux/kvm.h>
#include <linux/miscdevice.h>

#include "thin.h"

static long klu_dev_call(struct file *filp, unsigned int ioctl, unsigned long arg,
			 bool compat)
{
	struct klu_core *core = klu_core_get_active();
	long r;

	if (!core) {
		pr_notice_ratelimited("/dev/kvm ioctl 0x%x from pid %d: no KVM core is loaded\n",
				      ioctl, task_pid_nr(current));
		return -ENODEV;
	}
	if (compat && core->fops->compat_ioctl)
		r = core->fops->compat_ioctl(filp, ioctl, arg);
	else
		r = core->fops->unlocked_ioctl(filp, ioctl, arg);
	if (ioctl == KVM_CREATE_VM)
		r = klu_dev_vm_created(core, arg, r);
	klu_core_put(core);
	return r;
}

static long klu_dev_ioctl(struct file *filp, unsigned int ioctl, unsigned long arg)
{
	return klu_dev_call(filp, ioctl, arg, false);
}

#ifdef CONFIG_COMPAT
static long klu_dev_compat_ioctl(struct file *filp, unsigned int ioctl, unsigned long arg)
{
	return klu_dev_call(filp, ioctl, arg, true);
}
#endif

static const struct file_operations klu_dev_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = klu_dev_ioctl,
#ifdef CONFIG_COMPAT
	.compat_ioctl = klu_dev_compat_ioctl,
#endif
	.llseek = noop_llseek,
};

static struct miscdevice klu_dev = {
	.minor = KVM_MINOR,
	.name = "kvm",
	.fops = &klu_dev_fops,
};

struct device *klu_thin_misc_device(void)
{
	return klu_dev.this_device;
}

int klu_dev_init(void)
{
	int r = misc_register(&klu_dev);

	if (r)
		pr_err("cannot register /dev/kvm (misc minor %d): %d; is another KVM loaded?\n",
		       KVM_MINOR, r);
	return r;
}

void klu_dev_exit(void)
{
	misc_deregister(&klu_dev);
}
