// SPDX-License-Identifier: GPL-2.0
/*
 * VMX posted-interrupt descriptors: kvm_thin's memory, handed from vCPU to vCPU by a
 * live move.
 *
 * A posted IRTE (VT-d posted interrupts) holds the physical address of one vCPU's
 * descriptor, and the IOMMU writes there whenever the device interrupts.  Every VMX
 * core allocates its vCPUs' descriptors here (kvm_core/patches/vmx-pi-desc*), so that a
 * descriptor can outlive the core that allocated it.  When a move keeps an irq bypass
 * connected on such a host, the new core's vCPU adopts the old one's descriptor (same
 * address, pending bits kept) and the old vCPU gets a spare: the IRTE is not touched.
 * The core's half is kvm_core/klu_vmx_pi.c; "The posted-interrupt descriptor" in
 * Documentation/design.rst gives the order and why.
 *
 * A core offers its operations from hardware_setup(), before it registers /dev/kvm (and
 * so before it is a struct klu_core): they are kept by module, and looked up by the
 * core's vendor module when a move needs them.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/slab.h>

#include "thin.h"

/* The descriptor: 64 bytes, 64-byte aligned (Intel SDM, "Posted-Interrupt Processing"). */
#define KLU_PI_DESC_SIZE	64

static bool klu_pi_always;

static int klu_pi_always_set(const char *val, const struct kernel_param *kp)
{
	bool on;

	if (kstrtobool(val, &on))
		return -EINVAL;
	return klu_test_knob_set(val, kp, param_set_bool, !on);
}

static const struct kernel_param_ops klu_pi_always_ops = {
	.set = klu_pi_always_set,
	.get = param_get_bool,
};

module_param_cb(pi_handover_always, &klu_pi_always_ops, &klu_pi_always, 0644);
MODULE_PARM_DESC(pi_handover_always,
		 "hand posted-interrupt descriptors over on every move that keeps an irq bypass, also where the IOMMU does not post (tests; needs fault_injection=1)");

struct klu_pi_reg {
	struct list_head node;
	struct module *owner;
	const struct klu_pi_ops *ops;
};

static struct kmem_cache *klu_pi_cache;
static atomic_long_t klu_pi_handed, klu_pi_returned;
static LIST_HEAD(klu_pi_regs);
static DEFINE_MUTEX(klu_pi_lock);

struct pi_desc *KLU_THIN(pi_desc_alloc)(void)
{
	return kmem_cache_zalloc(klu_pi_cache, GFP_KERNEL);
}
EXPORT_SYMBOL_GPL(KLU_THIN(pi_desc_alloc));

void KLU_THIN(pi_desc_free)(struct pi_desc *desc)
{
	if (desc)
		kmem_cache_free(klu_pi_cache, desc);
}
EXPORT_SYMBOL_GPL(KLU_THIN(pi_desc_free));

void KLU_THIN(pi_ops)(struct module *owner, const struct klu_pi_ops *ops)
{
	struct klu_pi_reg *reg, *tmp;

	mutex_lock(&klu_pi_lock);
	list_for_each_entry_safe(reg, tmp, &klu_pi_regs, node) {
		if (reg->owner == owner) {
			list_del(&reg->node);
			kfree(reg);
		}
	}
	reg = ops ? kzalloc(sizeof(*reg), GFP_KERNEL) : NULL;
	if (reg) {
		reg->owner = owner;
		reg->ops = ops;
		list_add(&reg->node, &klu_pi_regs);
	} else if (ops) {
		pr_warn("%s: no memory to keep its posted-interrupt descriptor handover: its moves fall back\n",
			module_name(owner));
	}
	mutex_unlock(&klu_pi_lock);
}
EXPORT_SYMBOL_GPL(KLU_THIN(pi_ops));

/* The operations @core's vendor module offered, or NULL. */
static const struct klu_pi_ops *klu_pi_ops_of(struct klu_core *core)
{
	const struct klu_pi_ops *ops = NULL;
	struct klu_pi_reg *reg;

	mutex_lock(&klu_pi_lock);
	list_for_each_entry(reg, &klu_pi_regs, node) {
		if (reg->owner == core->vendor)
			ops = reg->ops;
	}
	mutex_unlock(&klu_pi_lock);
	return ops;
}

/* Does a move that keeps a connected irq bypass need the descriptors handed over? */
bool klu_pi_wanted(void)
{
	return klu_pi_always || klu_bypass_posting();
}

/*
 * Can @pm's descriptors be handed over?  Both cores must be VMX cores with the
 * operations, and no old vCPU in guest mode.  If not, the reason goes to @why.
 */
bool klu_pi_possible(struct klu_pi_move *pm, char *why, size_t size)
{
	unsigned int i;

	pm->from_ops = klu_pi_ops_of(pm->from);
	pm->to_ops = klu_pi_ops_of(pm->to);
	if (!pm->from_ops || !pm->to_ops) {
		snprintf(why, size, "core %s has no posted-interrupt descriptor handover",
			 pm->from_ops ? pm->to->tag : pm->from->tag);
		return false;
	}
	for (i = 0; i < pm->n; i++) {
		if (pm->from_ops->check(pm->old[i])) {
			snprintf(why, size, "a vCPU runs a nested guest (vmcs02 is loaded)");
			return false;
		}
	}
	return true;
}

/*
 * Give each new vCPU (pm->new) the descriptor of the old one (pm->old), which gets a
 * spare.  0, or -ENOMEM before anything was changed.
 */
int klu_pi_hand_over(struct klu_pi_move *pm)
{
	unsigned int i;

	pm->spare = kcalloc(pm->n, sizeof(*pm->spare), GFP_KERNEL);
	pm->own = kcalloc(pm->n, sizeof(*pm->own), GFP_KERNEL);
	if (!pm->spare || !pm->own)
		return -ENOMEM;
	for (i = 0; i < pm->n; i++) {
		pm->spare[i] = KLU_THIN(pi_desc_alloc)();
		if (!pm->spare[i])
			return -ENOMEM;
	}
	for (i = 0; i < pm->n; i++) {
		struct pi_desc *pd = pm->from_ops->release(pm->old[i], pm->spare[i]);

		pm->own[i] = pm->to_ops->adopt(pm->new[i], pd);
		WARN_ON_ONCE(pm->own[i] == pd);
	}
	pm->to_ops->settle(pm->new_vm, pm->n, pm->new, pm->own);
	pm->handed = true;
	atomic_long_add(pm->n, &klu_pi_handed);
	return 0;
}

/* A move that failed after klu_pi_hand_over(): the old vCPUs take theirs back. */
void klu_pi_hand_back(struct klu_pi_move *pm)
{
	unsigned int i;

	if (!pm->handed)
		return;
	for (i = 0; i < pm->n; i++) {
		struct pi_desc *pd = pm->to_ops->release(pm->new[i], pm->own[i]);

		/* The old vCPU gives its spare back; the new VM is closed with @own. */
		pm->own[i] = NULL;
		pm->spare[i] = pm->from_ops->adopt(pm->old[i], pd);
	}
	pm->from_ops->settle(pm->old_vm, pm->n, pm->old, pm->spare);
	pm->handed = false;
	atomic_long_add(pm->n, &klu_pi_returned);
}

/*
 * The move has ended.  After a handover, the new vCPUs' own descriptors are no one's;
 * without one (or after a hand-back), the spares are not.
 */
void klu_pi_move_end(struct klu_pi_move *pm)
{
	unsigned int i;

	for (i = 0; i < pm->n; i++) {
		if (pm->own)
			KLU_THIN(pi_desc_free)(pm->own[i]);
		if (pm->spare && !pm->handed)
			KLU_THIN(pi_desc_free)(pm->spare[i]);
	}
	kfree(pm->own);
	kfree(pm->spare);
	pm->own = NULL;
	pm->spare = NULL;
}

/* For /sys/kernel/kvm_thin/irqbypass. */
int klu_pi_show(char *buf, int at)
{
	return sysfs_emit_at(buf, at, " pi=%s pi_handed=%ld pi_returned=%ld",
			     klu_pi_always ? "always" : "auto",
			     atomic_long_read(&klu_pi_handed),
			     atomic_long_read(&klu_pi_returned));
}

int klu_pi_init(void)
{
	if (!boot_cpu_has(X86_FEATURE_VMX))
		return 0;
	klu_pi_cache = kmem_cache_create("kvm_thin_pi_desc", KLU_PI_DESC_SIZE,
					 KLU_PI_DESC_SIZE, SLAB_ACCOUNT, NULL);
	return klu_pi_cache ? 0 : -ENOMEM;
}

/* Every core is gone: each vCPU freed its descriptor, each module withdrew its ops. */
void klu_pi_exit(void)
{
	WARN_ON(!list_empty(&klu_pi_regs));
	kmem_cache_destroy(klu_pi_cache);
}
