/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The interface between kvm_thin and the KVM cores that it does not take from the
 * kernel's own headers: per-CPU hardware state that every core must share.  The calls
 * are inserted into upstream KVM by the semantic patches in kvm_core/patches/; each is
 * listed in Documentation/upstream-changes.rst.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KVM_THIN_CORE_API_H
#define KVM_THIN_CORE_API_H

#include <linux/types.h>
#include <linux/percpu.h>
#include <kvm_thin/abi.h>

struct irq_bypass_consumer;
struct irq_bypass_producer;
struct page;
struct vmcb;
struct vmcs;

/*
 * SVM: EFER.SVME is reference counted per CPU; the host save area is kvm_thin's.
 * svm_get() is 0, or -EBUSY where SVM is on and not by a core (another hypervisor's).
 */
int KLU_THIN(svm_get)(void);
void KLU_THIN(svm_put)(void);
struct page *KLU_THIN(svm_hsave_page)(int cpu);

/* SVM: the ASID allocator, the IBPB tracking and the TSC ratio cache, per CPU. */
struct klu_svm_cpu {
	u64 asid_generation;
	u32 max_asid;
	u32 next_asid;
	u32 min_asid;
	struct vmcb *current_vmcb;
	u64 current_tsc_ratio;
};
DECLARE_PER_CPU(struct klu_svm_cpu, KLU_THIN(svm_cpu));

/*
 * VMX: VMXON is reference counted per CPU, on kvm_thin's VMXON region; 0 or -errno:
 * -EBUSY where CR4.VMXE is set and not by a core, -EFAULT where VMXON faults, -EIO
 * where it fails.
 */
int KLU_THIN(vmxon)(void);
int KLU_THIN(vmxoff)(void);
DECLARE_PER_CPU(struct vmcs *, KLU_THIN(current_vmcs));
int KLU_THIN(allocate_vpid)(void);
void KLU_THIN(free_vpid)(int vpid);

/* User-return MSRs: one cache and one notifier per CPU, keyed by MSR index. */
void KLU_THIN(uret_online)(u32 msr);
int KLU_THIN(uret_set)(u32 msr, u64 value, u64 mask);

/*
 * irq bypass: kvm_thin holds the consumer of every irqfd, so that a live move can hand
 * a connected producer (a VFIO MSI) from the old core's irqfd to the new core's without
 * disconnecting it.  kvm_core/klu_bypass.c implements these for each core.
 */
struct klu_bypass_ops {
	/* Forget @prod as a live move takes the irqfd away; the IRQ is left as it is. */
	void (*save)(struct irq_bypass_consumer *cons, struct irq_bypass_producer *prod);
	/* Take @prod over, as the core that saved it left it. */
	void (*restore)(struct irq_bypass_consumer *cons, struct irq_bypass_producer *prod);
	/* The VM (the core's struct kvm, opaque to kvm_thin) whose irqfd @cons is. */
	const void *(*vm_of)(struct irq_bypass_consumer *cons);
	const char *tag;	/* the core's */
};

int KLU_THIN(irq_bypass_register)(struct irq_bypass_consumer *cons,
				  const struct klu_bypass_ops *ops);
void KLU_THIN(irq_bypass_unregister)(struct irq_bypass_consumer *cons,
				     const struct klu_bypass_ops *ops);

/*
 * VMX posted-interrupt descriptors are kvm_thin's memory (kvm_core/patches/vmx-pi-desc*),
 * so that a live move can hand a vCPU's descriptor, whose physical address a posted IRTE
 * holds, to the new core's vCPU.  kvm_core/klu_vmx_pi.c implements the operations for
 * each VMX core; @vcpu and @vm are the core's own vCPU and VM files.  kvm_thin calls them
 * with the VM quiesced, in this order: check (each old vCPU), release (old) and adopt
 * (new) per vCPU, then settle (the new VM) once; a failed move reverses it the same way.
 */
struct pi_desc;
struct file;
struct module;

struct klu_pi_ops {
	/* 0 if @vcpu's descriptor can be handed over now, -EBUSY while L2 runs. */
	int (*check)(struct file *vcpu);
	/* @vcpu lets its descriptor go and takes @spare (any content); returns the old. */
	struct pi_desc *(*release)(struct file *vcpu, struct pi_desc *spare);
	/* @vcpu takes @desc, with what its own had pending; returns its own. */
	struct pi_desc *(*adopt)(struct file *vcpu, struct pi_desc *desc);
	/* Once no injection can still reach the descriptors @own returned, merge them. */
	void (*settle)(struct file *vm, unsigned int n, struct file **vcpus,
		       struct pi_desc **own);
};

struct pi_desc *KLU_THIN(pi_desc_alloc)(void);
void KLU_THIN(pi_desc_free)(struct pi_desc *desc);
/* The posted-interrupt wake-up handler of a VMX core (NULL: its module's, removed). */
void KLU_THIN(set_posted_intr_wakeup_handler)(void (*handler)(void));
/* A VMX core's vendor module offers (@ops) or withdraws (NULL) its operations. */
void KLU_THIN(pi_ops)(struct module *owner, const struct klu_pi_ops *ops);

#endif
