// SPDX-License-Identifier: GPL-2.0
/*
 * Intel VMX state that all cores on a CPU share: VMX operation itself (VMXON is counted
 * per CPU and done on kvm_thin's own VMXON region, which outlives any core), the current
 * VMCS (two cores each caching "my VMCS is current" would VMRESUME the other's), and
 * VPIDs (two cores handing out one VPID would let two guests share TLB entries).
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitmap.h>
#include <linux/gfp.h>
#include <linux/percpu.h>
#include <linux/spinlock.h>
#include <asm/cpufeature.h>
#include <asm/msr.h>
#include <asm/tlbflush.h>
#include <asm/virtext.h>
#include <asm/vmx.h>

#include "thin.h"

DEFINE_PER_CPU(struct vmcs *, KLU_THIN(current_vmcs));
EXPORT_PER_CPU_SYMBOL_GPL(KLU_THIN(current_vmcs));

static DEFINE_PER_CPU(int, klu_vmx_refs);
static DEFINE_PER_CPU(void *, klu_vmxon_region);

#define KLU_VPID_NR	BIT(16)
static unsigned long *klu_vpid_bitmap;
static DEFINE_SPINLOCK(klu_vpid_lock);

int KLU_THIN(vmxon)(void)
{
	u64 pa = __pa(this_cpu_read(klu_vmxon_region));
	int r;

	if (this_cpu_inc_return(klu_vmx_refs) > 1)
		return 0;
	/*
	 * CR4.VMXE with no reference of ours: another hypervisor (VirtualBox, a KVM that is
	 * not ours) is in VMX operation here, and our VMXOFF would pull it from under it.
	 * -EBUSY, as upstream KVM does.
	 */
	if (cr4_read_shadow() & X86_CR4_VMXE) {
		this_cpu_dec(klu_vmx_refs);
		pr_err_ratelimited("CPU %d: VMX is already on (CR4.VMXE), not by a KVM core of ours: another hypervisor owns it\n",
				   smp_processor_id());
		return -EBUSY;
	}
	cr4_set_bits(X86_CR4_VMXE);
	r = klu_vmxon_insn(&pa);
	if (!r)
		return 0;
	if (r == -EFAULT)
		pr_err("VMXON faulted on CPU %d: VMX is disabled by firmware (IA32_FEATURE_CONTROL) or CR0/CR4 do not allow it\n",
		       smp_processor_id());
	else
		pr_err("VMXON failed on CPU %d (VMfail): this CPU is in VMX operation already, or the VMXON region is bad\n",
		       smp_processor_id());
	cr4_clear_bits(X86_CR4_VMXE);
	this_cpu_dec(klu_vmx_refs);
	return r;
}
EXPORT_SYMBOL_GPL(KLU_THIN(vmxon));

int KLU_THIN(vmxoff)(void)
{
	int refs = this_cpu_dec_return(klu_vmx_refs);

	if (WARN_ON_ONCE(refs < 0)) {
		this_cpu_write(klu_vmx_refs, 0);
		return 0;
	}
	return refs ? 0 : cpu_vmxoff();
}
EXPORT_SYMBOL_GPL(KLU_THIN(vmxoff));

/* VPID 0 is the host's. */
int KLU_THIN(allocate_vpid)(void)
{
	int vpid;

	spin_lock(&klu_vpid_lock);
	vpid = find_first_zero_bit(klu_vpid_bitmap, KLU_VPID_NR);
	if (vpid < KLU_VPID_NR)
		__set_bit(vpid, klu_vpid_bitmap);
	else
		vpid = 0;
	spin_unlock(&klu_vpid_lock);
	return vpid;
}
EXPORT_SYMBOL_GPL(KLU_THIN(allocate_vpid));

void KLU_THIN(free_vpid)(int vpid)
{
	if (vpid <= 0 || vpid >= KLU_VPID_NR)
		return;
	spin_lock(&klu_vpid_lock);
	__clear_bit(vpid, klu_vpid_bitmap);
	spin_unlock(&klu_vpid_lock);
}
EXPORT_SYMBOL_GPL(KLU_THIN(free_vpid));

int klu_vmx_init(void)
{
	u32 basic_lo, basic_hi;
	int cpu;

	if (!boot_cpu_has(X86_FEATURE_VMX))
		return 0;
	klu_vpid_bitmap = bitmap_zalloc(KLU_VPID_NR, GFP_KERNEL);
	if (!klu_vpid_bitmap)
		return -ENOMEM;
	__set_bit(0, klu_vpid_bitmap);

	rdmsr(MSR_IA32_VMX_BASIC, basic_lo, basic_hi);
	for_each_possible_cpu(cpu) {
		struct page *p = alloc_pages_node(cpu_to_node(cpu), GFP_KERNEL | __GFP_ZERO, 0);

		if (!p) {
			klu_vmx_exit();
			return -ENOMEM;
		}
		/* The region starts with the VMCS revision identifier, bit 31 clear. */
		*(u32 *)page_address(p) = basic_lo & 0x7fffffff;
		per_cpu(klu_vmxon_region, cpu) = page_address(p);
	}
	return 0;
}

void klu_vmx_exit(void)
{
	int cpu;

	for_each_possible_cpu(cpu) {
		WARN_ON_ONCE(per_cpu(klu_vmx_refs, cpu));
		if (per_cpu(klu_vmxon_region, cpu))
			free_page((unsigned long)per_cpu(klu_vmxon_region, cpu));
		per_cpu(klu_vmxon_region, cpu) = NULL;
	}
	bitmap_free(klu_vpid_bitmap);
	klu_vpid_bitmap = NULL;
}
