// SPDX-License-Identifier: GPL-2.0
/*
 * klu_nmi_kick: the QEMU test bed's answer to the NMI its harness (beds/run) sends
 * when the emulated host has been silent for a while and its local APIC holds an
 * interrupt that the CPU does not take.  QEMU 7.2's TCG sometimes loses track of such
 * an interrupt: inside a nested guest (it does not leave the guest, although KVM
 * intercepts INTR), and in the host's own idle loop (it halts with IF set and the
 * interrupt requested).  An NMI is handled here, with a line that says so, in two
 * cases only, both of which a real CPU cannot be in:
 *
 *  - it found the CPU in svm_vcpu_run (or vmx_vcpu_run), where an NMI that ended a
 *    guest is taken: the NMI got the CPU out of the guest, and the host takes its
 *    interrupt right after;
 *  - it found the CPU with interrupts enabled while the local APIC requests a vector
 *    above the processor priority: the task priority is written again (with its own
 *    value), which makes the emulated APIC evaluate its requests again.
 *
 * Anywhere else it is left to the kernel, whose unknown_nmi_panic then shows where the
 * host hung.  A test module of the beds only.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/kallsyms.h>
#include <linux/module.h>
#include <linux/string.h>
#include <asm/apic.h>
#include <asm/cpufeature.h>
#include <asm/nmi.h>

static atomic_t klu_kicks = ATOMIC_INIT(0);

/* @sym ("name [module]", or "name" for the kernel's own) is function @fn. */
static bool klu_is(const char *sym, const char *fn)
{
	size_t n = strlen(fn);

	return !strncmp(sym, fn, n) && (sym[n] == ' ' || !sym[n]);
}

/* The highest vector the local APIC requests (IRR), or -1. */
static int klu_irr_top(void)
{
	int i;

	for (i = 7; i >= 0; i--) {
		u32 v = apic_read(APIC_IRR + i * 0x10);

		if (v)
			return i * 32 + fls(v) - 1;
	}
	return -1;
}

static int klu_nmi_kick(unsigned int type, struct pt_regs *regs)
{
	char sym[KSYM_SYMBOL_LEN];
	u32 ppr, tpr;
	int irr;

	sprint_symbol_no_offset(sym, instruction_pointer(regs));
	if (klu_is(sym, "svm_vcpu_run") || klu_is(sym, "vmx_vcpu_run")) {
		pr_notice("kick %d: the NMI found CPU %d in a guest (%s): out of it, the host goes on\n",
			  atomic_inc_return(&klu_kicks), smp_processor_id(), sym);
		return NMI_HANDLED;
	}
	if (!(regs->flags & X86_EFLAGS_IF) || !boot_cpu_has(X86_FEATURE_APIC))
		return NMI_DONE;
	irr = klu_irr_top();
	ppr = apic_read(APIC_PROCPRI) & 0xff;
	if (irr < 0 || (irr >> 4) <= (ppr >> 4))
		return NMI_DONE;
	tpr = apic_read(APIC_TASKPRI) & 0xff;
	apic_write(APIC_TASKPRI, tpr);
	pr_notice("kick %d: the NMI found CPU %d with interrupts on (%s) and vector %d requested above PPR 0x%x: TPR 0x%x written again\n",
		  atomic_inc_return(&klu_kicks), smp_processor_id(), sym, irr, ppr, tpr);
	return NMI_HANDLED;
}

static int __init klu_nmi_kick_init(void)
{
	/* An emulator's answer: on real hardware an unknown NMI is not ours to eat. */
	if (!boot_cpu_has(X86_FEATURE_HYPERVISOR)) {
		pr_err("not loaded: this is not an emulated machine (no X86_FEATURE_HYPERVISOR)\n");
		return -ENODEV;
	}
	return register_nmi_handler(NMI_UNKNOWN, klu_nmi_kick, 0, "klu_nmi_kick");
}

static void __exit klu_nmi_kick_exit(void)
{
	unregister_nmi_handler(NMI_UNKNOWN, "klu_nmi_kick");
}

module_init(klu_nmi_kick_init);
module_exit(klu_nmi_kick_exit);
MODULE_DESCRIPTION("QEMU test bed: an NMI that found an interrupt the emulated CPU did not take is a kick, not a hang");
MODULE_LICENSE("GPL");
