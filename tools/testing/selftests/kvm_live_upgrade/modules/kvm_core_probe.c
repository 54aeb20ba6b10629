// SPDX-License-Identifier: GPL-2.0
/*
 * A module that registers /dev/kvm with kvm_thin but is not a core pair: its name has
 * no kvm_{intel,amd}_core_<tag> vendor module behind it.  kvm_thin must refuse it with
 * -EINVAL and a kernel log line that says why.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <kvm_thin/abi.h>

int KLU_THIN(misc_register)(struct miscdevice *misc);

static long klu_probe_ioctl(struct file *f, unsigned int ioctl, unsigned long arg)
{
	return -ENOTTY;
}

static const struct file_operations klu_probe_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = klu_probe_ioctl,
};

static struct miscdevice klu_probe_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "kvm",
	.fops = &klu_probe_fops,
};

static int __init klu_probe_init(void)
{
	return KLU_THIN(misc_register)(&klu_probe_dev);
}
module_init(klu_probe_init);
MODULE_LICENSE("GPL");
