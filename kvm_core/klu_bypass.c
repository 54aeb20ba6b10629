// SPDX-License-Identifier: GPL-2.0
/*
 * A core's side of kvm_thin's irq-bypass consumers.  kvm_core/klu_shim.h renames KVM's
 * calls of irq_bypass_register_consumer() and irq_bypass_unregister_consumer() (one
 * each, in virt/kvm/eventfd.c) to the two functions below, which hand the irqfd's
 * consumer to kvm_thin with this core's save and restore operations.
 *
 * save and restore are what kvm_arch_irq_bypass_del_producer() and
 * kvm_arch_irq_bypass_add_producer() do to KVM's own bookkeeping (the irqfd's producer,
 * the VM's count of assigned devices), without the pi_update_irte call that puts the
 * IRQ's remapping entry back to remapped mode or posts it again.  The remapping entry
 * stays as the old core left it.  kvm_thin uses them only on a host without
 * posted-interrupt remapping (IRQ_POSTING_CAP), where pi_update_irte does nothing; on
 * a host with it, a move disconnects and reconnects the producer (kvm_thin/bypass.c).
 *
 * Linked into kvm_core_<tag>.ko only.  Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <linux/irqbypass.h>
#include <linux/kvm_host.h>
#include <linux/kvm_irqfd.h>
#include <kvm_thin/core_api.h>

static void klu_core_bypass_save(struct irq_bypass_consumer *cons,
				 struct irq_bypass_producer *prod)
{
	struct kvm_kernel_irqfd *irqfd = container_of(cons, struct kvm_kernel_irqfd, consumer);
	struct kvm *kvm = irqfd->kvm;

	spin_lock_irq(&kvm->irqfds.lock);
	WARN_ON(irqfd->producer != prod);
	irqfd->producer = NULL;
	spin_unlock_irq(&kvm->irqfds.lock);
	kvm_arch_end_assignment(kvm);
}

static void klu_core_bypass_restore(struct irq_bypass_consumer *cons,
				    struct irq_bypass_producer *prod)
{
	struct kvm_kernel_irqfd *irqfd = container_of(cons, struct kvm_kernel_irqfd, consumer);
	struct kvm *kvm = irqfd->kvm;

	kvm_arch_start_assignment(kvm);
	spin_lock_irq(&kvm->irqfds.lock);
	irqfd->producer = prod;
	spin_unlock_irq(&kvm->irqfds.lock);
}

static const void *klu_core_bypass_vm_of(struct irq_bypass_consumer *cons)
{
	return container_of(cons, struct kvm_kernel_irqfd, consumer)->kvm;
}

static const struct klu_bypass_ops klu_core_bypass_ops = {
	.save = klu_core_bypass_save,
	.restore = klu_core_bypass_restore,
	.vm_of = klu_core_bypass_vm_of,
	.tag = KLU_CORE_TAG,
};

int klu_core_irq_bypass_register(struct irq_bypass_consumer *cons)
{
	return KLU_THIN(irq_bypass_register)(cons, &klu_core_bypass_ops);
}

void klu_core_irq_bypass_unregister(struct irq_bypass_consumer *cons)
{
	KLU_THIN(irq_bypass_unregister)(cons, &klu_core_bypass_ops);
}
