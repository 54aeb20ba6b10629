// SPDX-License-Identifier: GPL-2.0
/*
 * klu_nmi_kick: the QEMU test bed's answer to the NMI its harness (beds/run) sends
 * when the emulated host has been silent for a while and its local APIC holds an
 * interrupt that the CPU does not take.  QEMU 7.2's TCG sometimes does not leave a
 * nested guest for such an interrupt, although KVM intercepts it; the NMI does get the
 * CPU out.  If the NMI found the CPU in svm_vcpu_run (or vmx_vcpu_run), where an NMI
 * that ended a guest is taken, it is handled here, with a line that says so, and the
 * host goes on: it takes its interrupt right after.  Anywhere else it is left to the
 * kernel, whose unknown_nmi_panic then shows where the host hung.
 *
 * A test module of the beds only: a real CPU always leaves the guest.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/kallsyms.h>
#include <linux/module.h>
#include <linux/string.h>
#include <asm/nmi.h>

static atomic_t klu_kicks = ATOMIC_INIT(0);

/* @sym ("name [module]", or "name" for the kernel's own) is function @fn. */
static bool klu_is(const char *sym, const char *fn)
{
	size_t n = strlen(fn);

	return !strncmp(sym, fn, n) && (sym[n] == ' ' || !sym[n]);
}

static int klu_nmi_kick(unsigned int type, struct pt_regs *regs)
{
	char sym[KSYM_SYMBOL_LEN];

	sprint_symbol_no_offset(sym, instruction_pointer(regs));
	if (!klu_is(sym, "svm_vcpu_run") && !klu_is(sym, "vmx_vcpu_run"))
		return NMI_DONE;
	pr_info("kick %d: the NMI found CPU %d in a guest (%s): out of it, the host goes on\n",
		atomic_inc_return(&klu_kicks), smp_processor_id(), sym);
	return NMI_HANDLED;
}

static int __init klu_nmi_kick_init(void)
{
	return register_nmi_handler(NMI_UNKNOWN, klu_nmi_kick, 0, "klu_nmi_kick");
}

static void __exit klu_nmi_kick_exit(void)
{
	unregister_nmi_handler(NMI_UNKNOWN, "klu_nmi_kick");
}

module_init(klu_nmi_kick_init);
module_exit(klu_nmi_kick_exit);
MODULE_DESCRIPTION("QEMU test bed: an NMI that found the CPU in a guest is a kick, not a hang");
MODULE_LICENSE("GPL");
