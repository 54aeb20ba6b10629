// SPDX-License-Identifier: GPL-2.0
/*
 * User-return MSRs: MSRs that hold a guest value while a vCPU thread is in the kernel
 * and get the host value back when the thread returns to user space.  Each core keeps
 * a per-CPU cache of what is in the MSR; with two cores, core A's cache would say "my
 * guest value is loaded" after core B overwrote it, and A's guest would run with B's
 * value.  So there is one cache and one notifier per CPU, here, keyed by MSR index (two
 * cores may number their slots differently).
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/percpu.h>
#include <linux/smp.h>
#include <linux/spinlock.h>
#include <linux/user-return-notifier.h>
#include <asm/msr.h>

#include "thin.h"

#define KLU_URET_MAX	16

struct klu_uret_cpu {
	struct user_return_notifier urn;
	bool registered;
	struct {
		u64 host;
		u64 curr;
		bool valid;
	} v[KLU_URET_MAX];
};

static DEFINE_PER_CPU(struct klu_uret_cpu, klu_uret);
static u32 klu_uret_msrs[KLU_URET_MAX];
static int klu_nr_uret;
static DEFINE_SPINLOCK(klu_uret_lock);

/*
 * Slots are only ever appended: the count is published with release after the MSR
 * index is written, and read with acquire, so readers need no lock.
 */
static int klu_uret_slot(u32 msr)
{
	int i, n = smp_load_acquire(&klu_nr_uret);	/* pairs with klu_uret_slot_add() */

	for (i = 0; i < n; i++)
		if (klu_uret_msrs[i] == msr)
			return i;
	return -1;
}

static int klu_uret_slot_add(u32 msr)
{
	unsigned long flags;
	int slot;

	spin_lock_irqsave(&klu_uret_lock, flags);
	slot = klu_uret_slot(msr);
	if (slot < 0 && klu_nr_uret < KLU_URET_MAX) {
		slot = klu_nr_uret;
		klu_uret_msrs[slot] = msr;
		smp_store_release(&klu_nr_uret, slot + 1);	/* pairs with klu_uret_slot() */
	}
	spin_unlock_irqrestore(&klu_uret_lock, flags);
	return slot;
}

static void klu_on_user_return(struct user_return_notifier *urn)
{
	struct klu_uret_cpu *c = container_of(urn, struct klu_uret_cpu, urn);
	unsigned long flags;
	int i, n = smp_load_acquire(&klu_nr_uret);	/* pairs with klu_uret_slot_add() */

	/* Disable IRQs: an IPI that drops the notifiers may run between the checks. */
	local_irq_save(flags);
	if (c->registered) {
		c->registered = false;
		user_return_notifier_unregister(urn);
	}
	local_irq_restore(flags);
	for (i = 0; i < n; i++) {
		if (c->v[i].valid && c->v[i].curr != c->v[i].host) {
			wrmsrl(klu_uret_msrs[i], c->v[i].host);
			c->v[i].curr = c->v[i].host;
		}
	}
}

/* A core enables virtualisation on this CPU: learn the host value of @msr here. */
void KLU_THIN(uret_online)(u32 msr)
{
	struct klu_uret_cpu *c = this_cpu_ptr(&klu_uret);
	int slot = klu_uret_slot_add(msr);
	u64 value;

	if (slot < 0) {
		pr_err_once("more than %d user-return MSRs; MSR 0x%x not tracked\n",
			    KLU_URET_MAX, msr);
		return;
	}
	/* Another core may already hold a guest value here: keep the host value it saw. */
	if (c->v[slot].valid || rdmsrl_safe(msr, &value))
		return;
	c->v[slot].host = value;
	c->v[slot].curr = value;
	c->v[slot].valid = true;
}
EXPORT_SYMBOL_GPL(KLU_THIN(uret_online));

/* Load a guest value, restored to the host's on return to user space; 1 on a fault. */
int KLU_THIN(uret_set)(u32 msr, u64 value, u64 mask)
{
	struct klu_uret_cpu *c = this_cpu_ptr(&klu_uret);
	int slot = klu_uret_slot(msr);

	if (WARN_ON_ONCE(slot < 0 || !c->v[slot].valid))
		return 1;
	value = (value & mask) | (c->v[slot].host & ~mask);
	if (value == c->v[slot].curr)
		return 0;
	if (wrmsrl_safe(msr, value))
		return 1;
	c->v[slot].curr = value;
	if (!c->registered) {
		c->urn.on_user_return = klu_on_user_return;
		user_return_notifier_register(&c->urn);
		c->registered = true;
	}
	return 0;
}
EXPORT_SYMBOL_GPL(KLU_THIN(uret_set));

static void klu_uret_drop(void *unused)
{
	struct klu_uret_cpu *c = this_cpu_ptr(&klu_uret);

	if (c->registered)
		klu_on_user_return(&c->urn);
}

int klu_uret_init(void)
{
	return 0;
}

void klu_uret_exit(void)
{
	on_each_cpu(klu_uret_drop, NULL, 1);
}
