// SPDX-License-Identifier: GPL-2.0
/*
 * The symbols that modules outside this project link against kvm.ko for.  With kvm_thin
 * there is no kvm.ko: each core's exports are renamed (klu_<tag>_...), so kvm_thin
 * exports the plain names and sends each call to the core that owns the VM.
 *
 * In the Debian 6.1 x86 kernel one module outside KVM depends on kvm.ko: kvmgt
 * (i915 GVT-g), which uses the ten below.  ("modinfo -F depends" of every module of the
 * kernel names kvm only for kvm-intel, kvm-amd and kvmgt; "nm -u kvmgt.ko" against
 * kvm.ko's exports gives the list.)  Another kernel series may add to it: see
 * "Symbols for modules outside KVM" in Documentation/design.rst.
 *
 * A struct kvm is the core's; kvm_thin never looks inside it.  It only remembers, by
 * address, which core made each one (at KVM_CREATE_VM, and when a move builds a VM
 * again), in a hash that these calls read under RCU: kvmgt calls some of them under
 * kvm->mmu_lock.  kvmgt gets a struct kvm only through a KVM device (kvm-vfio), and may
 * hold it after the VMM closed the VM (kvm_get_kvm()): the entry of a VM that created a
 * device lives until the address is reused or its core unloads (a core cannot unload
 * while any of its VMs lives).  The entry of any other VM goes when the VM ends, or
 * when a move replaces its struct kvm; each entry names the kvm_thin VM that noted it,
 * so that a VM ending late does not take the entry of a new VM at a reused address.
 * Each core's functions are found with symbol_get() when it registers; the reference is
 * dropped at once, as the core's generic module cannot go before its vendor module has
 * deregistered the core.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/hashtable.h>
#include <linux/kvm_host.h>
#include <linux/module.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <asm/kvm_page_track.h>

#include "thin.h"

struct klu_kvm_owner {
	struct hlist_node node;
	const void *kvm;
	struct klu_core *core;
	const struct klu_vm *vm;	/* kvm_thin's VM that noted it */
	atomic_t held;			/* kvm_get_kvm()s less kvm_put_kvm()s */
	struct rcu_head rcu;
};

static DEFINE_HASHTABLE(klu_owners, 8);
static DEFINE_SPINLOCK(klu_owners_lock);

/* Core @core made the struct kvm at @kvm, for kvm_thin's VM @vm. */
void klu_owner_set(const void *kvm, struct klu_core *core, const struct klu_vm *vm)
{
	struct klu_kvm_owner *o, *n = kzalloc(sizeof(*n), GFP_KERNEL);

	spin_lock(&klu_owners_lock);
	hash_for_each_possible(klu_owners, o, node, (unsigned long)kvm) {
		if (o->kvm == kvm) {	/* noted again, or a freed VM's address reused */
			if (o->vm != vm)
				atomic_set(&o->held, 0);	/* the freed VM's were all put */
			WRITE_ONCE(o->core, core);
			o->vm = vm;
			spin_unlock(&klu_owners_lock);
			kfree(n);
			return;
		}
	}
	if (n) {
		n->kvm = kvm;
		n->core = core;
		n->vm = vm;
		hash_add_rcu(klu_owners, &n->node, (unsigned long)kvm);
	}
	spin_unlock(&klu_owners_lock);
	if (!n)
		pr_warn("no memory to note the core of a VM: kvmgt cannot use it\n");
}

/*
 * Forget the struct kvm at @kvm that @vm noted: its VM ended, or moved, and nothing
 * outside KVM can hold it.  If the address was reused meanwhile, the entry is another
 * VM's now and stays.
 */
void klu_owner_del(const void *kvm, const struct klu_vm *vm)
{
	struct klu_kvm_owner *o;

	spin_lock(&klu_owners_lock);
	hash_for_each_possible(klu_owners, o, node, (unsigned long)kvm) {
		if (o->kvm == kvm) {
			if (o->vm == vm) {
				hash_del_rcu(&o->node);
				kfree_rcu(o, rcu);
			}
			break;
		}
	}
	spin_unlock(&klu_owners_lock);
}

/* @core is going: forget its VMs (none is left; the caller synchronizes RCU). */
void klu_owner_forget_core(struct klu_core *core)
{
	struct klu_kvm_owner *o;
	struct hlist_node *tmp;
	int bkt;

	spin_lock(&klu_owners_lock);
	hash_for_each_safe(klu_owners, bkt, tmp, o, node) {
		if (o->core == core) {
			hash_del_rcu(&o->node);
			kfree_rcu(o, rcu);
		}
	}
	spin_unlock(&klu_owners_lock);
}

/* The entry of @kvm, under rcu_read_lock(), or NULL. */
static struct klu_kvm_owner *klu_owner_find(const void *kvm)
{
	struct klu_kvm_owner *o;

	hash_for_each_possible_rcu(klu_owners, o, node, (unsigned long)kvm)
		if (o->kvm == kvm)
			return o;
	return NULL;
}

/*
 * Does a module outside KVM (kvmgt) hold a reference on the struct kvm at @kvm?  It
 * got it through kvm-vfio and keeps using it: a move, which replaces the struct kvm,
 * would leave it with the old VM's.
 */
bool klu_owner_held(const void *kvm)
{
	struct klu_kvm_owner *o;
	int n;

	rcu_read_lock();
	o = klu_owner_find(kvm);
	n = o ? atomic_read(&o->held) : 0;
	rcu_read_unlock();
	/* Below 0: a put without its get (one made while the entry was missing). */
	if (n < 0)
		pr_warn_ratelimited("kvm_get_kvm()/kvm_put_kvm() of a VM do not balance (%d): taken as held\n",
				    n);
	return n != 0;
}

static void klu_owner_hold(const void *kvm, int n)
{
	struct klu_kvm_owner *o;

	rcu_read_lock();
	o = klu_owner_find(kvm);
	if (o)
		atomic_add(n, &o->held);
	rcu_read_unlock();
}

static struct klu_core *klu_owner(const struct kvm *kvm)
{
	struct klu_core *core = NULL;
	struct klu_kvm_owner *o;

	rcu_read_lock();
	hash_for_each_possible_rcu(klu_owners, o, node, (unsigned long)kvm) {
		if (o->kvm == kvm) {
			core = READ_ONCE(o->core);
			break;
		}
	}
	rcu_read_unlock();
	return core;
}

/* The owning core's copy of the function at @off in its exports, or NULL. */
static void *klu_core_fn(const struct kvm *kvm, size_t off, const char *name)
{
	struct klu_core *core = klu_owner(kvm);
	void *fn = core ? *(void **)((char *)&core->exports + off) : NULL;

	WARN_ONCE(!fn, "kvm_thin: %s() on a VM that no loaded core owns\n", name);
	return fn;
}

#define KLU_FN(kvm, name) \
	klu_core_fn(kvm, offsetof(struct klu_core_exports, name), __func__)

struct kvm_memory_slot *gfn_to_memslot(struct kvm *kvm, gfn_t gfn)
{
	typeof(gfn_to_memslot) *fn = KLU_FN(kvm, gfn_to_memslot);

	return fn ? fn(kvm, gfn) : NULL;
}
EXPORT_SYMBOL_GPL(gfn_to_memslot);

kvm_pfn_t gfn_to_pfn(struct kvm *kvm, gfn_t gfn)
{
	typeof(gfn_to_pfn) *fn = KLU_FN(kvm, gfn_to_pfn);

	return fn ? fn(kvm, gfn) : KVM_PFN_ERR_FAULT;
}
EXPORT_SYMBOL_GPL(gfn_to_pfn);

bool kvm_is_visible_gfn(struct kvm *kvm, gfn_t gfn)
{
	typeof(kvm_is_visible_gfn) *fn = KLU_FN(kvm, kvm_is_visible_gfn);

	return fn && fn(kvm, gfn);
}
EXPORT_SYMBOL_GPL(kvm_is_visible_gfn);

void kvm_get_kvm(struct kvm *kvm)
{
	typeof(kvm_get_kvm) *fn = KLU_FN(kvm, kvm_get_kvm);

	if (fn) {
		klu_owner_hold(kvm, 1);
		fn(kvm);
	}
}
EXPORT_SYMBOL_GPL(kvm_get_kvm);

void kvm_put_kvm(struct kvm *kvm)
{
	typeof(kvm_put_kvm) *fn = KLU_FN(kvm, kvm_put_kvm);

	if (fn) {
		klu_owner_hold(kvm, -1);
		fn(kvm);	/* may free it: the entry's count first */
	}
}
EXPORT_SYMBOL_GPL(kvm_put_kvm);

/* No VM to go by: a page reference, which every core drops the same way. */
void kvm_release_pfn_clean(kvm_pfn_t pfn)
{
	struct klu_core *core = klu_core_get_active();
	typeof(kvm_release_pfn_clean) *fn = core ? core->exports.kvm_release_pfn_clean : NULL;

	if (!WARN_ONCE(!fn, "kvm_thin: %s() with no core to do it\n", __func__))
		fn(pfn);
	if (core)
		klu_core_put(core);
}
EXPORT_SYMBOL_GPL(kvm_release_pfn_clean);

void kvm_page_track_register_notifier(struct kvm *kvm,
				      struct kvm_page_track_notifier_node *n)
{
	typeof(kvm_page_track_register_notifier) *fn =
		KLU_FN(kvm, kvm_page_track_register_notifier);

	if (fn)
		fn(kvm, n);
}
EXPORT_SYMBOL_GPL(kvm_page_track_register_notifier);

void kvm_page_track_unregister_notifier(struct kvm *kvm,
					struct kvm_page_track_notifier_node *n)
{
	typeof(kvm_page_track_unregister_notifier) *fn =
		KLU_FN(kvm, kvm_page_track_unregister_notifier);

	if (fn)
		fn(kvm, n);
}
EXPORT_SYMBOL_GPL(kvm_page_track_unregister_notifier);

void kvm_slot_page_track_add_page(struct kvm *kvm, struct kvm_memory_slot *slot, gfn_t gfn,
				  enum kvm_page_track_mode mode)
{
	typeof(kvm_slot_page_track_add_page) *fn = KLU_FN(kvm, kvm_slot_page_track_add_page);

	if (fn)
		fn(kvm, slot, gfn, mode);
}
EXPORT_SYMBOL_GPL(kvm_slot_page_track_add_page);

void kvm_slot_page_track_remove_page(struct kvm *kvm, struct kvm_memory_slot *slot,
				     gfn_t gfn, enum kvm_page_track_mode mode)
{
	typeof(kvm_slot_page_track_remove_page) *fn = KLU_FN(kvm, kvm_slot_page_track_remove_page);

	if (fn)
		fn(kvm, slot, gfn, mode);
}
EXPORT_SYMBOL_GPL(kvm_slot_page_track_remove_page);

/* Find core @core's exports of the names above.  0, or -ENOENT if one is missing. */
int klu_exports_resolve(struct klu_core *core)
{
	static const struct {
		const char *name;
		size_t off;
	} fns[] = {
#define KLU_SYM(name) { #name, offsetof(struct klu_core_exports, name) }
		KLU_SYM(gfn_to_memslot),
		KLU_SYM(gfn_to_pfn),
		KLU_SYM(kvm_is_visible_gfn),
		KLU_SYM(kvm_get_kvm),
		KLU_SYM(kvm_put_kvm),
		KLU_SYM(kvm_release_pfn_clean),
		KLU_SYM(kvm_page_track_register_notifier),
		KLU_SYM(kvm_page_track_unregister_notifier),
		KLU_SYM(kvm_slot_page_track_add_page),
		KLU_SYM(kvm_slot_page_track_remove_page),
#undef KLU_SYM
	};
	char sym[KSYM_NAME_LEN];
	int i, r = 0;
	void *fn;

	for (i = 0; i < ARRAY_SIZE(fns); i++) {
		snprintf(sym, sizeof(sym), "klu_%s_%s", core->tag, fns[i].name);
		fn = __symbol_get(sym);
		if (fn)
			__symbol_put(sym);
		else
			r = -ENOENT;
		*(void **)((char *)&core->exports + fns[i].off) = fn;
	}
	if (r)
		pr_warn("core %s does not export all of kvm.ko's symbols that kvmgt uses: kvmgt cannot use its VMs\n",
			core->tag);
	return r;
}
