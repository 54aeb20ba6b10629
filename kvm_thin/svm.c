// SPDX-License-Identifier: GPL-2.0
/*
 * AMD SVM state that all cores on a CPU share: EFER.SVME (counted, so one core's
 * hardware_disable does not pull SVM from under another's guests), the host save area
 * that MSR_VM_HSAVE_PA points at (it must outlive any one core), and the ASID allocator,
 * the last-run VMCB (for IBPB) and the TSC ratio cache.  Two cores with separate ASID
 * allocators would hand one ASID to two guests on a CPU, and those guests would share
 * TLB entries.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/gfp.h>
#include <linux/percpu.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>
#include <asm/virtext.h>

#include "thin.h"

DEFINE_PER_CPU(struct klu_svm_cpu, KLU_THIN(svm_cpu));
EXPORT_PER_CPU_SYMBOL_GPL(KLU_THIN(svm_cpu));

static DEFINE_PER_CPU(int, klu_svm_refs);
static DEFINE_PER_CPU(struct page *, klu_svm_hsave);

/*
 * The first reference on a CPU turns SVM on, unless it is on already: then another
 * hypervisor (VirtualBox, a KVM that is not ours) owns it, and sharing it would turn it
 * off under that one at the last svm_put().  -EBUSY then, as upstream KVM does.
 */
int KLU_THIN(svm_get)(void)
{
	u64 efer;

	if (this_cpu_inc_return(klu_svm_refs) > 1)
		return 0;
	rdmsrl(MSR_EFER, efer);
	if (efer & EFER_SVME) {
		this_cpu_dec(klu_svm_refs);
		pr_err_ratelimited("CPU %d: SVM is already on (EFER.SVME), not by a KVM core of ours: another hypervisor owns it\n",
				   smp_processor_id());
		return -EBUSY;
	}
	wrmsrl(MSR_EFER, efer | EFER_SVME);
	return 0;
}
EXPORT_SYMBOL_GPL(KLU_THIN(svm_get));

void KLU_THIN(svm_put)(void)
{
	int refs = this_cpu_dec_return(klu_svm_refs);

	if (WARN_ON_ONCE(refs < 0))
		this_cpu_write(klu_svm_refs, 0);
	else if (!refs)
		cpu_svm_disable();
}
EXPORT_SYMBOL_GPL(KLU_THIN(svm_put));

struct page *KLU_THIN(svm_hsave_page)(int cpu)
{
	return per_cpu(klu_svm_hsave, cpu);
}
EXPORT_SYMBOL_GPL(KLU_THIN(svm_hsave_page));

int klu_svm_init(void)
{
	int cpu;

	if (!boot_cpu_has(X86_FEATURE_SVM))
		return 0;
	for_each_possible_cpu(cpu) {
		struct page *p = alloc_pages_node(cpu_to_node(cpu), GFP_KERNEL | __GFP_ZERO, 0);

		if (!p) {
			klu_svm_exit();
			return -ENOMEM;
		}
		per_cpu(klu_svm_hsave, cpu) = p;
	}
	return 0;
}

void klu_svm_exit(void)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		WARN_ON_ONCE(per_cpu(klu_svm_refs, cpu));
		if (per_cpu(klu_svm_hsave, cpu))
			__free_page(per_cpu(klu_svm_hsave, cpu));
		per_cpu(klu_svm_hsave, cpu) = NULL;
	}
}
