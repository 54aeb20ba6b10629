// SPDX-License-Identifier: GPL-2.0
/*
 * The irq-bypass consumer of every irqfd, held by kvm_thin so that a live move does not
 * disconnect a producer (a VFIO MSI) from KVM.
 *
 * irqbypass.ko pairs one producer with one consumer per token (the eventfd), and a core
 * registers a consumer for each irqfd.  A move takes the irqfds off the old VM and puts
 * them on the new one, which with the cores' own consumers means del_producer and then
 * add_producer: on a host with posted interrupts, the IRQ's remapping entry is put back
 * to remapped mode and posted again.  So each core's calls come here instead
 * (kvm_core/klu_shim.h, kvm_core/klu_bypass.c): kvm_thin registers an "outer" consumer
 * of its own for the token, and passes its callbacks on to the core's "inner" one.
 * While a move detaches the irqfds, the old core's unregister does not disconnect: the
 * old core saves (forgets the producer, the IRTE left as it is) and the entry is parked,
 * still connected; when the move attaches the irqfd to the new VM, the new core's
 * register restores (takes the producer over).  The producer sees neither.
 *
 * On a host whose interrupt remapping posts interrupts (IRQ_POSTING_CAP), a posted IRTE
 * holds the address of the old vCPU's posted-interrupt descriptor.  On VMX the mover
 * hands the descriptor to the new vCPU too (pi.c), and the IRTE stays as it is.  Where
 * it cannot (AMD's AVIC, a core without the handover, a vCPU in guest mode), a move
 * disconnects and reconnects (the remapped path, as without kvm_thin) and reports it
 * as a fallback.  See "The irq-bypass consumers" in Documentation/design.rst.
 *
 * Locking: klu_bp_reg_lock serialises the cores' register/unregister calls and the
 * mover's; it is taken outside irqbypass.ko's mutex, and klu_bp_lock inside it (the
 * outer consumer's callbacks run under irqbypass.ko's mutex).  Nothing calls into
 * irqbypass.ko with klu_bp_lock held.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/eventfd.h>
#include <linux/irq.h>
#include <linux/irqbypass.h>
#include <linux/slab.h>
#include <linux/sysfs.h>
#include <asm/irq_remapping.h>

#include "thin.h"
#include "trace.h"

enum klu_bp_state {
	KLU_BP_BOUND,		/* a core's irqfd consumes */
	KLU_BP_ARMED,		/* bound, and the core's unregister will save */
	KLU_BP_PARKED,		/* saved: the producer waits for a core's restore */
};

struct klu_bp {
	struct irq_bypass_consumer outer;	/* registered with irqbypass.ko */
	struct irq_bypass_consumer *inner;	/* the core's, or NULL while parked */
	const struct klu_bypass_ops *ops;	/* the inner consumer's core */
	struct irq_bypass_producer *prod;	/* connected to outer, or NULL */
	struct irq_bypass_producer *saved;	/* what the last save let go of */
	bool refused;				/* inner refused prod: forward no del */
	enum klu_bp_state state;
	struct klu_vm *vm;			/* the VM a move hands it over for */
	struct task_struct *mover;		/* and the thread that moves it */
	bool handed;				/* saved during that move */
	struct list_head orphan;		/* klu_bypass_move_end()'s */
};

static DEFINE_MUTEX(klu_bp_reg_lock);
static DEFINE_MUTEX(klu_bp_lock);
static DEFINE_XARRAY(klu_bps);			/* token -> struct klu_bp */
static struct {
	unsigned long add, del, save, restore, fallback, orphaned;
} klu_bp_count;

static unsigned long klu_bp_vm_id(const struct klu_bp *bp)
{
	return bp->vm ? bp->vm->id : 0;
}

static void klu_bp_trace(const char *op, struct klu_bp *bp, const char *tag)
{
	trace_kvm_thin_irqbypass(op, klu_bp_vm_id(bp), tag ?: "-",
				 bp->prod ? bp->prod->irq : -1);
}

/* Does the IOMMU post interrupts straight into vCPUs' descriptors? */
bool klu_bypass_posting(void)
{
	return irq_remapping_cap(IRQ_POSTING_CAP);
}

/*
 * Can a move keep a connected bypass?  Where nothing posts, or where the posted IRTE
 * points to a VMX descriptor, which the move hands over (pi.c).  AMD's AVIC cannot.
 */
static bool klu_bp_can_keep(void)
{
	return !klu_bypass_posting() || boot_cpu_has(X86_FEATURE_VMX);
}

/* ---- the outer consumer's callbacks, under irqbypass.ko's mutex ---------------- */

static int klu_bp_add_producer(struct irq_bypass_consumer *cons,
			       struct irq_bypass_producer *prod)
{
	struct klu_bp *bp = container_of(cons, struct klu_bp, outer);
	int r = 0;

	mutex_lock(&klu_bp_lock);
	if (bp->inner) {
		r = bp->inner->add_producer(bp->inner, prod);
		klu_bp_count.add++;
		bp->refused = false;
	}
	/* Parked: the core that takes the irqfd gets add_producer, not restore. */
	if (!r)
		bp->prod = prod;
	klu_bp_trace("add", bp, bp->ops ? bp->ops->tag : NULL);
	mutex_unlock(&klu_bp_lock);
	return r;
}

static void klu_bp_del_producer(struct irq_bypass_consumer *cons,
				struct irq_bypass_producer *prod)
{
	struct klu_bp *bp = container_of(cons, struct klu_bp, outer);

	mutex_lock(&klu_bp_lock);
	if (bp->inner && !bp->refused) {
		bp->inner->del_producer(bp->inner, prod);
		klu_bp_count.del++;
	} else if (!bp->inner && klu_bypass_posting()) {
		/*
		 * Parked: the old core saved already.  Its IRTE may still post into the
		 * descriptor the move hands over: back to remapped mode, as the core's
		 * del_producer would have done, before the IRQ is freed or reused.
		 */
		irq_set_vcpu_affinity(prod->irq, NULL);
	}
	klu_bp_trace("del", bp, bp->ops ? bp->ops->tag : NULL);
	bp->prod = NULL;
	bp->saved = NULL;
	bp->refused = false;
	mutex_unlock(&klu_bp_lock);
}

static void klu_bp_stop(struct irq_bypass_consumer *cons)
{
	struct klu_bp *bp = container_of(cons, struct klu_bp, outer);

	mutex_lock(&klu_bp_lock);
	if (bp->inner && bp->inner->stop)
		bp->inner->stop(bp->inner);
	mutex_unlock(&klu_bp_lock);
}

static void klu_bp_start(struct irq_bypass_consumer *cons)
{
	struct klu_bp *bp = container_of(cons, struct klu_bp, outer);

	mutex_lock(&klu_bp_lock);
	if (bp->inner && bp->inner->start)
		bp->inner->start(bp->inner);
	mutex_unlock(&klu_bp_lock);
}

/* ---- what the cores call (kvm_core/klu_bypass.c) ------------------------------- */

/* A parked entry: @cons of core @ops takes the producer over. */
static void klu_bp_adopt(struct klu_bp *bp, struct irq_bypass_consumer *cons,
			 const struct klu_bypass_ops *ops)
{
	bp->inner = cons;
	bp->ops = ops;
	bp->state = KLU_BP_BOUND;
	if (bp->prod && bp->prod == bp->saved) {
		ops->restore(cons, bp->prod);
		klu_bp_count.restore++;
		klu_bp_trace("restore", bp, ops->tag);
	} else if (bp->prod) {
		/* The producer came, or came again, while parked. */
		int r = cons->add_producer(cons, bp->prod);

		klu_bp_count.add++;
		klu_bp_trace("add", bp, ops->tag);
		if (r) {
			pr_warn("core %s refused the irq bypass of IRQ %d (%d): its irqfd goes the remapped way\n",
				ops->tag, bp->prod->irq, r);
			bp->refused = true;	/* outer stays connected, the core has none */
		}
	}
	bp->saved = NULL;
}

int KLU_THIN(irq_bypass_register)(struct irq_bypass_consumer *cons,
				  const struct klu_bypass_ops *ops)
{
	unsigned long token = (unsigned long)cons->token;
	struct klu_bp *bp;
	int r;

	if (!cons->token || !cons->add_producer || !cons->del_producer)
		return -EINVAL;
	mutex_lock(&klu_bp_reg_lock);
	mutex_lock(&klu_bp_lock);
	bp = xa_load(&klu_bps, token);
	if (bp) {
		/*
		 * Parked: the mover attaches the irqfd to a VM (the new one, or the old one
		 * again).  Anything else: another irqfd of the token is live, and
		 * irqbypass.ko's answer is EBUSY too.
		 */
		r = -EBUSY;
		if (bp->state == KLU_BP_PARKED && bp->mover == current) {
			klu_bp_adopt(bp, cons, ops);
			r = 0;
		}
		mutex_unlock(&klu_bp_lock);
		goto out;
	}
	bp = kzalloc(sizeof(*bp), GFP_KERNEL_ACCOUNT);
	r = bp ? xa_err(xa_store(&klu_bps, token, bp, GFP_KERNEL_ACCOUNT)) : -ENOMEM;
	if (r) {
		mutex_unlock(&klu_bp_lock);
		kfree(bp);
		goto out;
	}
	bp->outer.token = cons->token;
	bp->outer.add_producer = klu_bp_add_producer;
	bp->outer.del_producer = klu_bp_del_producer;
	bp->outer.stop = klu_bp_stop;
	bp->outer.start = klu_bp_start;
	bp->inner = cons;
	bp->ops = ops;
	mutex_unlock(&klu_bp_lock);

	r = irq_bypass_register_consumer(&bp->outer);
	if (r) {
		mutex_lock(&klu_bp_lock);
		xa_erase(&klu_bps, token);
		mutex_unlock(&klu_bp_lock);
		kfree(bp);
	}
out:
	mutex_unlock(&klu_bp_reg_lock);
	return r;
}
EXPORT_SYMBOL_GPL(KLU_THIN(irq_bypass_register));

void KLU_THIN(irq_bypass_unregister)(struct irq_bypass_consumer *cons,
				     const struct klu_bypass_ops *ops)
{
	unsigned long token = (unsigned long)cons->token;
	struct klu_bp *bp;

	mutex_lock(&klu_bp_reg_lock);
	mutex_lock(&klu_bp_lock);
	bp = xa_load(&klu_bps, token);
	if (!bp || bp->inner != cons) {		/* never registered (it failed) */
		mutex_unlock(&klu_bp_lock);
		goto out;
	}
	if (bp->state == KLU_BP_ARMED) {
		if (bp->prod && !bp->refused) {
			ops->save(cons, bp->prod);
			bp->saved = bp->prod;
			klu_bp_count.save++;
			klu_bp_trace("save", bp, ops->tag);
		}
		bp->inner = NULL;
		bp->ops = NULL;
		bp->refused = false;
		bp->state = KLU_BP_PARKED;
		bp->handed = true;
		mutex_unlock(&klu_bp_lock);
		goto out;
	}
	xa_erase(&klu_bps, token);
	mutex_unlock(&klu_bp_lock);
	irq_bypass_unregister_consumer(&bp->outer);	/* del_producer, through inner */
	kfree(bp);
out:
	mutex_unlock(&klu_bp_reg_lock);
}
EXPORT_SYMBOL_GPL(KLU_THIN(irq_bypass_unregister));

/* ---- what the mover calls (move.c) -------------------------------------------- */

struct klu_bp_arm {
	struct klu_vm *vm;
	const void *kvm;	/* the core's VM the irqfds are detached from */
	bool first, keep;
	unsigned int fallback, armed;
};

static void klu_bp_arm_one(struct eventfd_ctx *ctx, void *data)
{
	struct klu_bp_arm *a = data;
	struct klu_bp *bp = xa_load(&klu_bps, (unsigned long)ctx);

	if (!bp || bp->state != KLU_BP_BOUND)
		return;
	/*
	 * Another VM's irqfd on the same eventfd holds the token's one consumer (the
	 * second irqfd of an eventfd gets none, as with stock KVM): that entry is not
	 * this move's to save, nor to hand to this VM's new irqfd.
	 */
	if (!bp->inner || bp->ops->vm_of(bp->inner) != a->kvm)
		return;
	if (!a->keep) {
		if (a->first && bp->prod) {
			a->fallback++;
			klu_bp_count.fallback++;
			klu_bp_trace("fallback", bp, bp->ops->tag);
		}
		return;
	}
	bp->state = KLU_BP_ARMED;
	bp->vm = a->vm;
	bp->mover = current;
	a->armed += !!bp->prod;
}

/*
 * Before the irqfds of @vm are detached from a core's VM @kvm (that core's struct kvm):
 * with @keep, their consumers are to be saved rather than disconnected, and @armed gets
 * how many are connected.
 * @first: the move's first detach (a failed move detaches from the new VM too).
 * Returns the number of connected irqfds that disconnect instead (without @keep), on
 * the first call.
 */
unsigned int klu_bypass_arm(struct klu_vm *vm, const void *kvm, bool first, bool keep,
			    unsigned int *armed)
{
	struct klu_bp_arm a = { .vm = vm, .kvm = kvm, .first = first, .keep = keep };

	mutex_lock(&klu_bp_reg_lock);
	mutex_lock(&klu_bp_lock);
	klu_journal_irqfds(&vm->journal, klu_bp_arm_one, &a);
	mutex_unlock(&klu_bp_lock);
	mutex_unlock(&klu_bp_reg_lock);
	*armed = a.armed;
	return a.fallback;
}

/*
 * The move of @vm has ended: disarm what was not detached, and disconnect a producer
 * whose irqfd did not come back (a failed move that could not attach it anywhere).
 * Returns the number of irqfds whose producer a core saved and a core restored.
 */
unsigned int klu_bypass_move_end(struct klu_vm *vm)
{
	struct klu_bp *bp, *next;
	unsigned int kept = 0;
	unsigned long token;
	LIST_HEAD(orphans);

	mutex_lock(&klu_bp_reg_lock);
	mutex_lock(&klu_bp_lock);
	xa_for_each(&klu_bps, token, bp) {
		if (bp->vm != vm)
			continue;
		if (bp->state == KLU_BP_PARKED) {
			xa_erase(&klu_bps, token);
			list_add(&bp->orphan, &orphans);
			continue;
		}
		if (bp->handed && bp->prod && bp->inner)
			kept++;
		bp->state = KLU_BP_BOUND;
		bp->handed = false;
		bp->vm = NULL;
		bp->mover = NULL;
	}
	mutex_unlock(&klu_bp_lock);
	list_for_each_entry_safe(bp, next, &orphans, orphan) {
		pr_warn("VM %lu (pid %d): an irqfd did not come back after the move: its irq bypass is disconnected\n",
			vm->id, vm->pid);
		klu_bp_trace("orphan", bp, NULL);
		klu_bp_count.orphaned++;
		irq_bypass_unregister_consumer(&bp->outer);
		kfree(bp);
	}
	mutex_unlock(&klu_bp_reg_lock);
	return kept;
}

/* /sys/kernel/kvm_thin/irqbypass */
static ssize_t irqbypass_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	unsigned int consumers = 0, connected = 0, parked = 0;
	unsigned long token;
	struct klu_bp *bp;
	ssize_t n;

	mutex_lock(&klu_bp_lock);
	xa_for_each(&klu_bps, token, bp) {
		consumers++;
		connected += !!bp->prod;
		parked += bp->state == KLU_BP_PARKED;
	}
	n = sysfs_emit(buf,
		       "mode=%s consumers=%u connected=%u parked=%u add=%lu del=%lu save=%lu restore=%lu fallback=%lu orphaned=%lu posting=%s",
		       klu_bp_can_keep() ? "keep" : "fallback", consumers, connected, parked,
		       klu_bp_count.add, klu_bp_count.del, klu_bp_count.save,
		       klu_bp_count.restore, klu_bp_count.fallback, klu_bp_count.orphaned,
		       klu_bypass_posting() ? "yes" : "no");
	mutex_unlock(&klu_bp_lock);
	n += klu_pi_show(buf, n);
	return n + sysfs_emit_at(buf, n, "\n");
}

struct kobj_attribute klu_irqbypass_attr = __ATTR_RO(irqbypass);
