// SPDX-License-Identifier: GPL-2.0
/*
 * A VMX core's side of the posted-interrupt descriptor handover.
 *
 * With VT-d posted interrupts, the IRTE of an assigned device's MSI holds the physical
 * address of one vCPU's posted-interrupt descriptor.  kvm_core/patches/vmx-pi-desc*
 * make that descriptor kvm_thin's memory, pointed to by the vCPU, and the operations
 * below let a live move give the old core's descriptor to the new core's vCPU, so the
 * IRTE stays as it is and what the IOMMU posts meanwhile stays pending in it:
 *
 *  release (old vCPU)  loaded once more, so that it is on no wake-up list; it points to
 *                      a spare (nothing pending, SN set) from then on, so that the old
 *                      vCPU, loaded again to complete an exit or to be destroyed, never
 *                      touches the descriptor the new one uses.
 *  adopt (new vCPU)    after KVM_SET_LAPIC (which clears the vCPU's own descriptor):
 *                      points the vCPU, its VMCS and its IPI-virtualisation entry to the
 *                      descriptor, ORs in what was posted to its own one during the
 *                      restore, and sets the control word for this CPU: NDST this CPU,
 *                      NV the posted-interrupt vector, SN set (the vCPU's next load
 *                      clears it, as after a reset), ON if anything is pending, so the
 *                      first entry syncs PIR into IRR.  Atomically: the IOMMU may post.
 *  settle (new VM)     an injection that read the vCPU's old pointer before adopt may
 *                      still set a bit in its own descriptor: once the VM's irq SRCU
 *                      has no such reader (the in-kernel PIT injects under it; irqfds
 *                      are detached), what reached those descriptors is merged.
 *
 * check refuses a vCPU in guest mode: vmcs02 is loaded then, not vmcs01.
 *
 * Linked into kvm_intel_core_<tag>.ko only.  Copyright (C) 2026 The kvm-live-upgrade
 * authors.
 */
#include <linux/kvm_host.h>
#include <linux/module.h>
#include <asm/apic.h>

#include "vmx/vmx.h"
#include "vmx/posted_intr.h"
#include "kvm_cache_regs.h"
#include <kvm_thin/core_api.h>

static int klu_vmx_pi_check(struct file *f)
{
	struct kvm_vcpu *vcpu = f->private_data;
	int r;

	mutex_lock(&vcpu->mutex);
	r = is_guest_mode(vcpu) ? -EBUSY : 0;
	mutex_unlock(&vcpu->mutex);
	return r;
}

/* The descriptor's NDST for a CPU, in the host APIC's addressing mode. */
static u32 klu_pi_ndst(int cpu)
{
	u32 dest = cpu_physical_id(cpu);

	return x2apic_mode ? dest : (dest << 8) & 0xff00;
}

/* With @vcpu loaded: it uses @pd from now on, in software and in hardware. */
static struct pi_desc *klu_pi_point(struct kvm_vcpu *vcpu, struct pi_desc *pd)
{
	struct vcpu_vmx *vmx = to_vmx(vcpu);
	struct pi_desc *was = vmx->pi_desc;

	WRITE_ONCE(vmx->pi_desc, pd);
	if (enable_apicv && lapic_in_kernel(vcpu))
		vmcs_write64(POSTED_INTR_DESC_ADDR, __pa(pd));
	if (vmx_can_use_ipiv(vcpu))
		WRITE_ONCE(to_kvm_vmx(vcpu->kvm)->pid_table[vcpu->vcpu_id],
			   __pa(pd) | PID_TABLE_ENTRY_VALID);
	return was;
}

/* Move what is pending in @from to @to, and flag it (ON) there. */
static void klu_pi_merge(struct pi_desc *to, struct pi_desc *from)
{
	unsigned long *src = (unsigned long *)from->pir;
	unsigned long *dst = (unsigned long *)to->pir;
	unsigned long bits;
	int i;

	for (i = 0; i < sizeof(from->pir) / sizeof(*src); i++) {
		bits = xchg(&src[i], 0);
		if (bits)
			atomic_long_or(bits, (atomic_long_t *)&dst[i]);
	}
	if (!pi_is_pir_empty(to))
		pi_set_on(to);
}

/* NDST for @cpu, NV the posted-interrupt vector, SN set; ON as the hardware has it. */
static void klu_pi_control(struct pi_desc *pd, int cpu)
{
	struct pi_desc old, new;

	old.control = READ_ONCE(pd->control);
	do {
		new.control = old.control;
		new.ndst = klu_pi_ndst(cpu);
		new.nv = POSTED_INTR_VECTOR;
		new.sn = 1;
	} while (!try_cmpxchg64(&pd->control, &old.control, new.control));
}

static struct pi_desc *klu_vmx_pi_release(struct file *f, struct pi_desc *spare)
{
	struct kvm_vcpu *vcpu = f->private_data;
	struct pi_desc *pd;

	mutex_lock(&vcpu->mutex);
	vcpu_load(vcpu);
	memset(spare, 0, sizeof(*spare));
	klu_pi_control(spare, vcpu->cpu);
	pd = klu_pi_point(vcpu, spare);
	vcpu_put(vcpu);
	mutex_unlock(&vcpu->mutex);
	return pd;
}

static struct pi_desc *klu_vmx_pi_adopt(struct file *f, struct pi_desc *pd)
{
	struct kvm_vcpu *vcpu = f->private_data;
	struct pi_desc *own;

	mutex_lock(&vcpu->mutex);
	vcpu_load(vcpu);
	klu_pi_control(pd, vcpu->cpu);
	own = klu_pi_point(vcpu, pd);
	klu_pi_merge(pd, own);
	vcpu_put(vcpu);
	mutex_unlock(&vcpu->mutex);
	return own;
}

static void klu_vmx_pi_settle(struct file *vm, unsigned int n, struct file **vcpus,
			      struct pi_desc **own)
{
	struct kvm *kvm = vm->private_data;
	unsigned int i;

	synchronize_srcu_expedited(&kvm->irq_srcu);
	for (i = 0; i < n; i++) {
		struct kvm_vcpu *vcpu = vcpus[i]->private_data;

		klu_pi_merge(READ_ONCE(to_vmx(vcpu)->pi_desc), own[i]);
	}
}

static const struct klu_pi_ops klu_vmx_pi_ops = {
	.check = klu_vmx_pi_check,
	.release = klu_vmx_pi_release,
	.adopt = klu_vmx_pi_adopt,
	.settle = klu_vmx_pi_settle,
};

/* kvm_core/klu_shim.h: vmx_init() and hardware_unsetup() call this. */
void klu_core_set_pi_wakeup_handler(void (*handler)(void))
{
	KLU_THIN(set_posted_intr_wakeup_handler)(handler);
	KLU_THIN(pi_ops)(THIS_MODULE, handler ? &klu_vmx_pi_ops : NULL);
}
