// SPDX-License-Identifier: GPL-2.0
/*
 * klu_hw_owner: plays another hypervisor (VirtualBox, a KVM that is not ours) that has
 * turned hardware virtualisation on, for vm_hostile -t hwowner.  At load it sets
 * EFER.SVME (AMD) or CR4.VMXE (Intel) on every online CPU where it is clear, the
 * bits such a hypervisor sets first; at unload it clears them again where it set them.
 * The "held" parameter reads how many online CPUs have the bit set now: a KVM core
 * that turned it off under its owner would show as fewer.  Load it while no VM runs.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cpu.h>
#include <linux/cpumask.h>
#include <linux/module.h>
#include <linux/smp.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>
#include <asm/tlbflush.h>

static bool klu_svm;
static struct cpumask klu_set;		/* the CPUs where this module set the bit */
static atomic_t klu_held;

static bool klu_bit_on(void)
{
	u64 efer;

	if (klu_svm) {
		rdmsrl(MSR_EFER, efer);
		return efer & EFER_SVME;
	}
	return cr4_read_shadow() & X86_CR4_VMXE;
}

static void klu_take(void *unused)
{
	u64 efer;

	if (klu_bit_on())
		return;
	if (klu_svm) {
		rdmsrl(MSR_EFER, efer);
		wrmsrl(MSR_EFER, efer | EFER_SVME);
	} else {
		cr4_set_bits(X86_CR4_VMXE);
	}
	cpumask_set_cpu(smp_processor_id(), &klu_set);
}

static void klu_give_back(void *unused)
{
	u64 efer;

	if (!cpumask_test_cpu(smp_processor_id(), &klu_set))
		return;
	if (klu_svm) {
		rdmsrl(MSR_EFER, efer);
		wrmsrl(MSR_EFER, efer & ~EFER_SVME);
	} else {
		cr4_clear_bits(X86_CR4_VMXE);
	}
}

static void klu_count(void *unused)
{
	if (klu_bit_on())
		atomic_inc(&klu_held);
}

static int klu_held_get(char *buf, const struct kernel_param *kp)
{
	int n;

	cpus_read_lock();
	atomic_set(&klu_held, 0);
	on_each_cpu(klu_count, NULL, 1);
	n = atomic_read(&klu_held);
	cpus_read_unlock();
	return sysfs_emit(buf, "%d\n", n);
}

static const struct kernel_param_ops klu_held_ops = {
	.get = klu_held_get,
};
module_param_cb(held, &klu_held_ops, NULL, 0444);
MODULE_PARM_DESC(held, "online CPUs with EFER.SVME or CR4.VMXE set now");

static int __init klu_hw_owner_init(void)
{
	if (boot_cpu_has(X86_FEATURE_SVM)) {
		klu_svm = true;
	} else if (!boot_cpu_has(X86_FEATURE_VMX)) {
		pr_err("neither SVM nor VMX on this CPU\n");
		return -ENODEV;
	}
	cpus_read_lock();
	on_each_cpu(klu_take, NULL, 1);
	cpus_read_unlock();
	pr_info("%s set on %u CPUs, as another hypervisor would\n",
		klu_svm ? "EFER.SVME" : "CR4.VMXE", cpumask_weight(&klu_set));
	return 0;
}

static void __exit klu_hw_owner_exit(void)
{
	cpus_read_lock();
	on_each_cpu(klu_give_back, NULL, 1);
	cpus_read_unlock();
}

module_init(klu_hw_owner_init);
module_exit(klu_hw_owner_exit);

MODULE_DESCRIPTION("Test: VMX/SVM turned on by someone other than a KVM core");
MODULE_AUTHOR("The kvm-live-upgrade authors");
MODULE_LICENSE("GPL");
