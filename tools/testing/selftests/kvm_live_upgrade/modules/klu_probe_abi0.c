// SPDX-License-Identifier: GPL-2.0
/*
 * A stand-in for a core built against kvm_thin core ABI 0, which no kvm_thin provides.
 * Loading it must fail: the module loader finds no klu_thin0_misc_register and says so.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <kvm_thin/abi.h>

int KLU_THIN(misc_register)(struct miscdevice *misc);

static struct miscdevice klu_probe_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "kvm",
};

static int __init klu_probe_init(void)
{
	return KLU_THIN(misc_register)(&klu_probe_dev);
}
module_init(klu_probe_init);
MODULE_LICENSE("GPL");
