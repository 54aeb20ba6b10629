// SPDX-License-Identifier: GPL-2.0
/*
 * The journal: what the VMM configured on a VM or vCPU that KVM has no ioctl to read
 * back (memory slots, irqfds, ioeventfds, GSI routing, capabilities, ...).  kvm_thin
 * records each such ioctl after the core accepted it, in the uAPI's own format, which
 * every KVM version understands, and a move replays the journal on the new core.  State
 * that KVM can report (registers, LAPIC, irqchip, clocks, ...) is not journalled: a move
 * reads it from the old core at the time of the move.
 *
 * An ioctl that changes a VM in a way kvm_thin cannot replay makes the VM unmovable,
 * with the reason in /sys/kernel/kvm_thin/vms/<id>/movable; a move refuses it rather
 * than lose that state.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cred.h>
#include <linux/eventfd.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/kvm.h>
#include <linux/slab.h>
#include <linux/stringify.h>
#include <linux/uaccess.h>
#include <linux/vfio.h>

#include "thin.h"

/* How an ioctl is kept. */
enum klu_keep {
	KLU_KEEP_NONE,		/* reads state, or moves it as state: not journalled */
	KLU_KEEP_APPEND,	/* every call, in order */
	KLU_KEEP_LATEST,	/* the last call replaces earlier ones */
	KLU_KEEP_SPECIAL,	/* keyed or paired: handled by its own code */
	KLU_KEEP_REFUSE,	/* cannot be replayed: the VM becomes unmovable */
};

struct klu_record {
	struct list_head node;
	unsigned int ioctl;
	unsigned long value;		/* the argument, for ioctls that take a value */
	struct file *files[2];		/* eventfds the argument names by number */
	const struct cred *cred;	/* the caller's: the replay has its rights */
	u32 size;			/* of data[], the argument as passed */
	u8 data[];
};

#define KLU_MAX_ARG	KLU_SCRATCH_ARG

static enum klu_keep klu_vm_keep(unsigned int ioctl)
{
	switch (ioctl) {
	case KVM_CHECK_EXTENSION:
	case KVM_CREATE_VCPU:		/* a move recreates the VM's vCPUs itself */
	case KVM_IRQ_LINE:
	case KVM_IRQ_LINE_STATUS:
	case KVM_SIGNAL_MSI:
	case KVM_GET_IRQCHIP:
	case KVM_SET_IRQCHIP:
	case KVM_GET_PIT:
	case KVM_SET_PIT:
	case KVM_GET_PIT2:
	case KVM_SET_PIT2:
	case KVM_GET_CLOCK:
	case KVM_SET_CLOCK:
	case KVM_GET_DIRTY_LOG:
	case KVM_CLEAR_DIRTY_LOG:
	case KVM_GET_STATS_FD:
	case KVM_GET_TSC_KHZ:
	case KVM_GET_NR_MMU_PAGES:
	/*
	 * A device's file is kvm_thin's, and a move makes the device again, with its own
	 * journal: a device other than kvm-vfio makes the VM unmovable (files.c).
	 */
	case KVM_CREATE_DEVICE:
		return KLU_KEEP_NONE;
	case KVM_CREATE_IRQCHIP:
	case KVM_CREATE_PIT:
	case KVM_CREATE_PIT2:
	case KVM_ENABLE_CAP:
	case KVM_REGISTER_COALESCED_MMIO:
		return KLU_KEEP_APPEND;
	case KVM_SET_TSS_ADDR:
	case KVM_SET_IDENTITY_MAP_ADDR:
	case KVM_SET_BOOT_CPU_ID:
	case KVM_SET_NR_MMU_PAGES:
	case KVM_SET_TSC_KHZ:
	case KVM_SET_GSI_ROUTING:
	case KVM_SET_PMU_EVENT_FILTER:
	case KVM_X86_SET_MSR_FILTER:
	case KVM_REINJECT_CONTROL:
		return KLU_KEEP_LATEST;
	case KVM_SET_USER_MEMORY_REGION:
	case KVM_IRQFD:
	case KVM_IOEVENTFD:
	case KVM_UNREGISTER_COALESCED_MMIO:
		return KLU_KEEP_SPECIAL;
	}
	return KLU_KEEP_REFUSE;
}

static enum klu_keep klu_vcpu_keep(unsigned int ioctl)
{
	switch (ioctl) {
	case KVM_GET_REGS:
	case KVM_SET_REGS:
	case KVM_GET_SREGS:
	case KVM_SET_SREGS:
	case KVM_GET_SREGS2:
	case KVM_SET_SREGS2:
	case KVM_GET_FPU:
	case KVM_SET_FPU:
	case KVM_GET_XSAVE:
	case KVM_GET_XSAVE2:
	case KVM_SET_XSAVE:
	case KVM_GET_XCRS:
	case KVM_SET_XCRS:
	case KVM_GET_MSRS:
	case KVM_SET_MSRS:
	case KVM_GET_LAPIC:
	case KVM_SET_LAPIC:
	case KVM_GET_VCPU_EVENTS:
	case KVM_SET_VCPU_EVENTS:
	case KVM_GET_MP_STATE:
	case KVM_SET_MP_STATE:
	case KVM_GET_DEBUGREGS:
	case KVM_SET_DEBUGREGS:
	case KVM_GET_NESTED_STATE:
	case KVM_SET_NESTED_STATE:
	case KVM_GET_CPUID2:
	case KVM_SET_CPUID:
	case KVM_SET_CPUID2:
	case KVM_GET_TSC_KHZ:
	case KVM_SET_TSC_KHZ:
	case KVM_GET_DEVICE_ATTR:
	case KVM_SET_DEVICE_ATTR:	/* x86 vCPUs have one attribute: the TSC offset */
	case KVM_HAS_DEVICE_ATTR:
	case KVM_INTERRUPT:
	case KVM_NMI:
	case KVM_SMI:
	case KVM_X86_SET_MCE:
	case KVM_KVMCLOCK_CTRL:
	case KVM_TRANSLATE:
	case KVM_GET_STATS_FD:
	case KVM_GET_SUPPORTED_HV_CPUID:
	case KVM_CHECK_EXTENSION:
		return KLU_KEEP_NONE;
	case KVM_ENABLE_CAP:
		return KLU_KEEP_APPEND;
	case KVM_SET_SIGNAL_MASK:
	case KVM_SET_GUEST_DEBUG:
	case KVM_X86_SETUP_MCE:
	case KVM_TPR_ACCESS_REPORTING:
	case KVM_SET_VAPIC_ADDR:
		return KLU_KEEP_LATEST;
	}
	return KLU_KEEP_REFUSE;
}

/* A device's ioctls: kvm-vfio's VFIO groups (the only device a move makes again). */
static enum klu_keep klu_device_keep(unsigned int ioctl)
{
	switch (ioctl) {
	case KVM_HAS_DEVICE_ATTR:
	case KVM_GET_DEVICE_ATTR:
		return KLU_KEEP_NONE;
	case KVM_SET_DEVICE_ATTR:
		return KLU_KEEP_SPECIAL;
	}
	return KLU_KEEP_REFUSE;
}

/* A kvm-vfio attribute that adds (@del false) or deletes a VFIO group. */
static bool klu_vfio_group_attr(const struct kvm_device_attr *a, bool del)
{
	return a->group == KVM_DEV_VFIO_GROUP &&
	       a->attr == (del ? KVM_DEV_VFIO_GROUP_DEL : KVM_DEV_VFIO_GROUP_ADD);
}

/*
 * Is @file a VFIO group?  kvm-vfio took one at the fd number that the journal reads
 * again from the VMM's memory; a VMM that put another file there (its own VM file, a
 * socket) must not get kvm_thin to hold that one, which could keep its VM alive for
 * ever.  VFIO's own test, found as kvm-vfio finds it: with no vfio loaded there is no
 * group either.
 */
static bool klu_vfio_group_file(struct file *file)
{
	bool (*is_group)(struct file *file) = symbol_get(vfio_file_is_group);
	bool r = is_group && is_group(file);

	if (is_group)
		symbol_put(vfio_file_is_group);
	return r;
}

/* Is @file an eventfd, as KVM took for an irqfd or ioeventfd? */
static bool klu_eventfd_file(struct file *file)
{
	struct eventfd_ctx *ctx = eventfd_ctx_fileget(file);

	if (IS_ERR(ctx))
		return false;
	eventfd_ctx_put(ctx);
	return true;
}

static void klu_record_free(struct klu_record *rec)
{
	if (rec->cred)
		put_cred(rec->cred);
	if (rec->files[0])
		fput(rec->files[0]);
	if (rec->files[1])
		fput(rec->files[1]);
	kfree(rec);
}

void klu_journal_free(struct list_head *journal)
{
	struct klu_record *rec, *next;

	list_for_each_entry_safe(rec, next, journal, node) {
		list_del(&rec->node);
		klu_record_free(rec);
	}
}

/* The size of the argument of @ioctl at @uarg, including what it points to. */
static long klu_arg_size(unsigned int ioctl, void __user *uarg)
{
	u32 n;

	switch (ioctl) {
	case KVM_SET_TSS_ADDR:
	case KVM_SET_BOOT_CPU_ID:
	case KVM_SET_NR_MMU_PAGES:
	case KVM_SET_TSC_KHZ:
	case KVM_CREATE_IRQCHIP:
	case KVM_CREATE_PIT:
		return 0;	/* a value, or nothing */
	case KVM_SET_GSI_ROUTING:
		if (get_user(n, &((struct kvm_irq_routing __user *)uarg)->nr))
			return -EFAULT;
		return struct_size((struct kvm_irq_routing *)NULL, entries, n);
	case KVM_SET_PMU_EVENT_FILTER:
		if (get_user(n, &((struct kvm_pmu_event_filter __user *)uarg)->nevents))
			return -EFAULT;
		return struct_size((struct kvm_pmu_event_filter *)NULL, events, n);
	case KVM_SET_SIGNAL_MASK:
		if (get_user(n, &((struct kvm_signal_mask __user *)uarg)->len))
			return -EFAULT;
		return struct_size((struct kvm_signal_mask *)NULL, sigset, n);
	case KVM_X86_SET_MSR_FILTER:
		return sizeof(struct kvm_msr_filter);	/* bitmaps follow, see below */
	case KVM_REINJECT_CONTROL:	/* _IO, yet it takes a pointer */
		return sizeof(struct kvm_reinject_control);
	}
	return _IOC_SIZE(ioctl);
}

/*
 * The count that sized @rec's argument was read on its own, before the argument: the
 * copy must hold the same one, or a replay would read past the record.
 */
static bool klu_arg_count_holds(struct klu_record *rec)
{
	switch (rec->ioctl) {
	case KVM_SET_GSI_ROUTING:
		return struct_size((struct kvm_irq_routing *)NULL, entries,
				   ((struct kvm_irq_routing *)rec->data)->nr) == rec->size;
	case KVM_SET_PMU_EVENT_FILTER: {
		struct kvm_pmu_event_filter *f = (void *)rec->data;

		return struct_size(f, events, f->nevents) == rec->size;
	}
	case KVM_SET_SIGNAL_MASK:
		return struct_size((struct kvm_signal_mask *)NULL, sigset,
				   ((struct kvm_signal_mask *)rec->data)->len) == rec->size;
	}
	return true;
}

/*
 * An MSR filter's bitmaps are behind pointers: keep them after the struct.  Takes @rec:
 * the deeper record, or an ERR_PTR with @rec freed.
 */
static struct klu_record *klu_record_msr_filter(struct klu_record *rec)
{
	struct kvm_msr_filter *f = (void *)rec->data;
	size_t size = rec->size;
	struct klu_record *deep;
	int i;

	for (i = 0; i < KVM_MSR_FILTER_MAX_RANGES; i++)
		size += BITS_TO_LONGS(f->ranges[i].nmsrs) * sizeof(long);
	if (size > KLU_MAX_ARG) {
		klu_record_free(rec);
		return ERR_PTR(-E2BIG);
	}
	deep = krealloc(rec, struct_size(rec, data, size), GFP_KERNEL_ACCOUNT);
	if (!deep) {
		klu_record_free(rec);
		return ERR_PTR(-ENOMEM);
	}
	f = (void *)deep->data;
	size = deep->size;
	for (i = 0; i < KVM_MSR_FILTER_MAX_RANGES; i++) {
		size_t n = BITS_TO_LONGS(f->ranges[i].nmsrs) * sizeof(long);

		if (n && copy_from_user(deep->data + size,
					(void __user *)f->ranges[i].bitmap, n)) {
			klu_record_free(deep);
			return ERR_PTR(-EFAULT);
		}
		size += n;
	}
	deep->size = size;
	return deep;
}

static struct klu_record *klu_record_new(unsigned int ioctl, unsigned long arg)
{
	void __user *uarg = (void __user *)arg;
	struct klu_record *rec;
	long size = klu_arg_size(ioctl, uarg);

	if (size < 0)
		return ERR_PTR(size);
	if (size > KLU_MAX_ARG)
		return ERR_PTR(-E2BIG);
	rec = kzalloc(struct_size(rec, data, size), GFP_KERNEL_ACCOUNT);
	if (!rec)
		return ERR_PTR(-ENOMEM);
	rec->ioctl = ioctl;
	rec->size = size;
	rec->cred = get_current_cred();
	if (!size) {
		rec->value = arg;
	} else if (copy_from_user(rec->data, uarg, size)) {
		klu_record_free(rec);
		return ERR_PTR(-EFAULT);
	}
	if (!klu_arg_count_holds(rec)) {
		klu_record_free(rec);
		return ERR_PTR(-EINVAL);
	}
	return ioctl == KVM_X86_SET_MSR_FILTER ? klu_record_msr_filter(rec) : rec;
}

/* Drop every record of @journal that @match says @rec supersedes. */
static void klu_journal_drop(struct list_head *journal, struct klu_record *rec,
			     bool (*match)(struct klu_record *old, struct klu_record *rec))
{
	struct klu_record *old, *next;

	list_for_each_entry_safe(old, next, journal, node) {
		if (old->ioctl == rec->ioctl && match(old, rec)) {
			list_del(&old->node);
			klu_record_free(old);
		}
	}
}

static bool klu_same_ioctl(struct klu_record *old, struct klu_record *rec)
{
	return true;
}

static bool klu_same_cap(struct klu_record *old, struct klu_record *rec)
{
	return ((struct kvm_enable_cap *)old->data)->cap ==
	       ((struct kvm_enable_cap *)rec->data)->cap;
}

/* The same VFIO group file (an add, against a delete of it). */
static bool klu_same_group(struct klu_record *old, struct klu_record *rec)
{
	return old->files[0] == rec->files[0];
}

static bool klu_same_irqfd(struct klu_record *old, struct klu_record *rec)
{
	return old->files[0] == rec->files[0] &&
	       ((struct kvm_irqfd *)old->data)->gsi == ((struct kvm_irqfd *)rec->data)->gsi;
}

static bool klu_same_ioeventfd(struct klu_record *old, struct klu_record *rec)
{
	struct kvm_ioeventfd *a = (void *)old->data, *b = (void *)rec->data;
	u32 flags = b->flags & ~KVM_IOEVENTFD_FLAG_DEASSIGN;

	return old->files[0] == rec->files[0] && a->addr == b->addr && a->len == b->len &&
	       a->flags == flags &&
	       (!(flags & KVM_IOEVENTFD_FLAG_DATAMATCH) || a->datamatch == b->datamatch);
}

/* KVM unregisters every zone of the same kind inside the range it is given. */
static bool klu_zone_inside(struct klu_record *old, struct klu_record *rec)
{
	struct kvm_coalesced_mmio_zone *z = (void *)old->data, *r = (void *)rec->data;

	return z->pio == r->pio && z->addr >= r->addr && z->addr + z->size <= r->addr + r->size;
}

/*
 * A memory slot's record replaces the slot's last one (found through vm->slots: a VMM
 * may have thousands of slots); a deleted slot is forgotten.  1: drop @rec.
 */
static int klu_journal_slot(struct klu_vm *vm, struct klu_record *rec, bool *drop_dirty)
{
	struct kvm_userspace_memory_region *m = (void *)rec->data, *was;
	struct klu_record *old;

	/*
	 * The core checked its own copy of the argument, not this one (the same bytes, or
	 * the VM is unmovable: klu_journal_note()), and dirty.c sizes bitmaps by it.
	 */
	if (!PAGE_ALIGNED(m->memory_size) || m->memory_size >> PAGE_SHIFT > KLU_SLOT_PAGES_MAX)
		return -EINVAL;
	old = m->memory_size ? xa_store(&vm->slots, m->slot, rec, GFP_KERNEL_ACCOUNT) :
			       xa_erase(&vm->slots, m->slot);
	if (xa_is_err(old))
		return xa_err(old);
	/* Bits a move carried for the slot hold while it logs, in the same place. */
	was = old ? (void *)old->data : NULL;
	*drop_dirty = !(was && m->flags & KVM_MEM_LOG_DIRTY_PAGES &&
			was->flags & KVM_MEM_LOG_DIRTY_PAGES &&
			was->memory_size == m->memory_size &&
			was->guest_phys_addr == m->guest_phys_addr);
	if (old) {
		list_del(&old->node);
		klu_record_free(old);
	}
	return m->memory_size ? 0 : 1;
}

static int klu_record_files(struct klu_record *rec)
{
	int fds[2] = { -1, -1 };
	int i;

	if (rec->ioctl == KVM_IRQFD) {
		struct kvm_irqfd *a = (void *)rec->data;

		fds[0] = a->fd;
		if (a->flags & KVM_IRQFD_FLAG_RESAMPLE)
			fds[1] = a->resamplefd;
	} else if (rec->ioctl == KVM_IOEVENTFD) {
		fds[0] = ((struct kvm_ioeventfd *)rec->data)->fd;
	} else if (rec->ioctl == KVM_SET_DEVICE_ATTR) {
		struct kvm_device_attr *a = (void *)rec->data;

		if (!klu_vfio_group_attr(a, false) && !klu_vfio_group_attr(a, true))
			return 0;	/* refused below */
		if (get_user(fds[0], (s32 __user *)(unsigned long)a->addr))
			return -EFAULT;
	}
	/*
	 * Each fd number must name what the core takes (an eventfd, a VFIO group), or the
	 * VMM swapped it, and its VM cannot be recorded.  Nothing else is held, so no file
	 * can keep its own VM alive here.
	 */
	for (i = 0; i < 2; i++) {
		if (fds[i] < 0) {
			if (!i && rec->ioctl == KVM_SET_DEVICE_ATTR)
				return -EBADF;
			continue;
		}
		rec->files[i] = fget(fds[i]);
		if (!rec->files[i])
			return -EBADF;
		if (rec->ioctl == KVM_SET_DEVICE_ATTR ? !klu_vfio_group_file(rec->files[i]) :
		    !klu_eventfd_file(rec->files[i]))
			return -EBADF;
	}
	return 0;
}

/* What the core made for @vm has no file of kvm_thin's (@why): no move may drop it. */
void klu_journal_refuse(struct klu_vm *vm, const char *why)
{
	mutex_lock(&vm->files_lock);
	klu_vm_refuse(vm, false, "%s", why);
	mutex_unlock(&vm->files_lock);
}

/*
 * Is @rec a KVM_ENABLE_CAP that @journal need not keep, because it repeats the last
 * one, byte for byte?  A repeat changes nothing a replay would not set already; one
 * with another call between them may (a value that call changed), so it is kept.
 * @nr gets the number of KVM_ENABLE_CAP records in @journal.
 */
static bool klu_cap_repeats(struct list_head *journal, struct klu_record *rec,
			    unsigned int *nr)
{
	struct klu_record *old, *last = NULL;

	*nr = 0;
	list_for_each_entry_reverse(old, journal, node) {
		if (old->ioctl != KVM_ENABLE_CAP)
			continue;
		if (!last)
			last = old;
		(*nr)++;
	}
	return last && last->size == rec->size && !memcmp(last->data, rec->data, rec->size);
}

static enum klu_keep klu_file_keep(struct klu_file *kf, unsigned int ioctl)
{
	switch (kf->kind) {
	case KLU_FILE_VM:
		return klu_vm_keep(ioctl);
	case KLU_FILE_VCPU:
		return klu_vcpu_keep(ioctl);
	default:
		return klu_device_keep(ioctl);
	}
}

/*
 * Before the core runs @ioctl(@arg) on @kf: the one copy of its argument that the
 * journal will keep, with the files it names and the caller's credentials.  NULL if
 * @ioctl is not journalled, an ERR_PTR if it cannot be (then, if the core accepts the
 * call, the VM becomes unmovable), or the record, for klu_journal_note().
 *
 * The copy, and the fgets, come before the core's call and before files_lock: a fault
 * there can take as long as the VMM likes (userfaultfd), and a move takes files_lock
 * before it stops anything.
 */
struct klu_record *klu_journal_take(struct klu_file *kf, unsigned int ioctl,
				    unsigned long arg)
{
	struct klu_record *rec;
	enum klu_keep keep = klu_file_keep(kf, ioctl);
	int r;

	if (keep == KLU_KEEP_NONE)
		return NULL;
	if (keep == KLU_KEEP_REFUSE)
		return ERR_PTR(-EOPNOTSUPP);
	rec = klu_record_new(ioctl, arg);
	if (IS_ERR(rec))
		return rec;
	r = klu_record_files(rec);
	if (r) {
		klu_record_free(rec);
		return ERR_PTR(r);
	}
	return rec;
}

void klu_journal_untake(struct klu_record *rec)
{
	if (!IS_ERR_OR_NULL(rec))
		klu_record_free(rec);
}

/*
 * Does the VMM's memory still hold, after the core's call, what @rec took before it?
 * A VMM that changed an argument while the core read it (another thread, or a
 * userfaultfd that answers the core's fault) has the core configured by bytes that
 * kvm_thin cannot know: neither copy may be replayed.  An eventfd swapped under the
 * same fd number counts as a change.  0 if it holds, -EAGAIN if not, or why it could
 * not be read again.
 */
static int klu_record_holds(struct klu_record *rec, unsigned long arg)
{
	struct klu_record *now = klu_record_new(rec->ioctl, arg);
	int r;

	if (IS_ERR(now))
		return PTR_ERR(now);
	r = klu_record_files(now);
	if (!r && (now->size != rec->size || now->value != rec->value ||
		   memcmp(now->data, rec->data, rec->size) ||
		   now->files[0] != rec->files[0] || now->files[1] != rec->files[1]))
		r = -EAGAIN;
	klu_record_free(now);
	return r;
}

/*
 * The core accepted @ioctl(@arg) on @kf, whose argument klu_journal_take() copied
 * before the call into @rec (which this consumes): keep what a move will need of it.
 */
void klu_journal_note(struct klu_file *kf, unsigned int ioctl, unsigned long arg,
		      struct klu_record *rec)
{
	struct klu_vm *vm = kf->vm;
	struct list_head *journal;
	bool drop_dirty = false;
	unsigned int nr_caps;
	enum klu_keep keep;
	u32 slot = 0;
	int r = 0;

	if (!rec)
		return;
	keep = klu_file_keep(kf, ioctl);
	journal = kf->kind == KLU_FILE_VM ? &vm->journal : &kf->journal;
	if (IS_ERR(rec)) {
		r = PTR_ERR(rec);
		rec = NULL;
	} else {
		r = klu_record_holds(rec, arg);
		if (r) {
			klu_record_free(rec);
			rec = NULL;
		}
	}
	mutex_lock(&vm->files_lock);
	if (keep == KLU_KEEP_REFUSE) {
		klu_vm_refuse(vm, false, "%s ioctl 0x%x cannot be replayed on another core",
			      kf->kind == KLU_FILE_DEVICE ? "device" :
			      kf->kind == KLU_FILE_VM ? "VM" : "vCPU", ioctl);
		goto out;
	}
	if (r == -EAGAIN) {
		/* the VMM changed the argument while the core read it (klu_record_holds()) */
		klu_vm_refuse(vm, false, "the argument of ioctl 0x%x changed while the core ran it",
			      ioctl);
		goto out;
	}
	if (r) {
		klu_vm_refuse(vm, false, "VM ioctl 0x%x could not be recorded", ioctl);
		goto out;
	}
	switch (ioctl) {
	case KVM_SET_USER_MEMORY_REGION:
		slot = ((struct kvm_userspace_memory_region *)rec->data)->slot;
		r = klu_journal_slot(vm, rec, &drop_dirty);
		if (r < 0)
			klu_vm_refuse(vm, false, "VM ioctl 0x%x could not be recorded", ioctl);
		if (r)
			goto drop;
		break;
	case KVM_IRQFD:
		if (((struct kvm_irqfd *)rec->data)->flags & KVM_IRQFD_FLAG_DEASSIGN) {
			klu_journal_drop(journal, rec, klu_same_irqfd);
			goto drop;
		}
		break;
	case KVM_IOEVENTFD:
		if (((struct kvm_ioeventfd *)rec->data)->flags & KVM_IOEVENTFD_FLAG_DEASSIGN) {
			klu_journal_drop(journal, rec, klu_same_ioeventfd);
			goto drop;
		}
		break;
	case KVM_UNREGISTER_COALESCED_MMIO:
		rec->ioctl = KVM_REGISTER_COALESCED_MMIO;
		klu_journal_drop(journal, rec, klu_zone_inside);
		goto drop;
	case KVM_SET_DEVICE_ATTR:	/* a device's: kvm-vfio's groups */
		if (klu_vfio_group_attr((void *)rec->data, true)) {
			klu_journal_drop(journal, rec, klu_same_group);
			goto drop;
		}
		if (!klu_vfio_group_attr((void *)rec->data, false)) {
			klu_vm_refuse(vm, false,
				      "device ioctl 0x%x cannot be replayed on another core",
				      ioctl);
			goto drop;
		}
		break;
	case KVM_ENABLE_CAP:
		switch (((struct kvm_enable_cap *)rec->data)->cap) {
		case KVM_CAP_DIRTY_LOG_RING:
		case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:
			klu_vm_refuse(vm, false,
				      "dirty ring ioctl 0x%x cannot be replayed on another core",
				      ioctl);
			goto drop;
		case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
			if (kf->kind != KLU_FILE_VM)
				break;
			/* Its value replaces the last one (dirty.c reads it). */
			klu_journal_drop(journal, rec, klu_same_cap);
			WRITE_ONCE(vm->dirty_manual,
				   ((struct kvm_enable_cap *)rec->data)->args[0]);
			break;
		}
		if (klu_cap_repeats(journal, rec, &nr_caps))
			goto drop;
		if (nr_caps >= KLU_CAPS_MAX) {
			klu_vm_refuse(vm, false,
				      "more than %d different KVM_ENABLE_CAP calls to replay",
				      KLU_CAPS_MAX);
			goto drop;
		}
		break;
	default:
		if (keep == KLU_KEEP_LATEST)
			klu_journal_drop(journal, rec, klu_same_ioctl);
		break;
	}
	list_add_tail(&rec->node, journal);
	goto out;
drop:
	klu_record_free(rec);
out:
	mutex_unlock(&vm->files_lock);
	/* Not under files_lock: dirty_lock is held over the VMM's memory (dirty.c). */
	if (drop_dirty)
		klu_dirty_slot_changed(vm, slot);
}

/* The memory slots of @vm that log dirty pages, in a new array at @out: how many, or -errno. */
int klu_journal_log_slots(struct klu_vm *vm, struct klu_dirty_slot **out)
{
	struct kvm_userspace_memory_region *m;
	struct klu_record *rec;
	unsigned long slot;
	int n = 0, max = 0;

	lockdep_assert_held(&vm->files_lock);
	*out = NULL;
	xa_for_each(&vm->slots, slot, rec)
		max += !!(((struct kvm_userspace_memory_region *)rec->data)->flags &
			  KVM_MEM_LOG_DIRTY_PAGES);
	if (!max)
		return 0;
	*out = kvmalloc_array(max, sizeof(**out), GFP_KERNEL_ACCOUNT);
	if (!*out)
		return -ENOMEM;
	xa_for_each(&vm->slots, slot, rec) {
		m = (void *)rec->data;
		if (m->flags & KVM_MEM_LOG_DIRTY_PAGES)
			(*out)[n++] = (struct klu_dirty_slot){
				.slot = m->slot,
				.npages = m->memory_size >> PAGE_SHIFT,
			};
	}
	return n;
}

/* Put @rec's argument into @scratch, with fds for its files; returns the ioctl arg. */
static long klu_record_stage(struct klu_record *rec, void __user *scratch, int fds[2],
			     enum klu_replay what)
{
	u8 *buf;
	int i;

	if (!rec->size)
		return rec->value;
	buf = kmemdup(rec->data, rec->size, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	for (i = 0; i < 2; i++) {
		/* Detaching an irqfd names its eventfd and GSI only. */
		if (!rec->files[i] || (i && what == KLU_REPLAY_IRQFDS_OFF))
			continue;
		fds[i] = klu_give_fd(rec->files[i]);
		if (fds[i] < 0) {
			kfree(buf);
			return fds[i];
		}
	}
	if (rec->ioctl == KVM_IRQFD) {
		struct kvm_irqfd *a = (void *)buf;

		a->fd = fds[0];
		if (what == KLU_REPLAY_IRQFDS_OFF) {
			a->flags = KVM_IRQFD_FLAG_DEASSIGN;
			a->resamplefd = 0;
		} else if (fds[1] >= 0) {
			a->resamplefd = fds[1];
		}
	} else if (rec->ioctl == KVM_IOEVENTFD) {
		((struct kvm_ioeventfd *)buf)->fd = fds[0];
	} else if (rec->ioctl == KVM_SET_DEVICE_ATTR) {
		/* A VFIO group's fd, in scratch past the attribute. */
		struct kvm_device_attr *a = (void *)buf;
		s32 __user *ufd = scratch + ALIGN(sizeof(*a), 8);

		a->attr = what == KLU_REPLAY_GROUPS_OFF ? KVM_DEV_VFIO_GROUP_DEL :
			  KVM_DEV_VFIO_GROUP_ADD;
		a->addr = (u64)(unsigned long)ufd;
		if (put_user(fds[0], ufd)) {
			kfree(buf);
			return -EFAULT;
		}
	} else if (rec->ioctl == KVM_ENABLE_CAP &&
		   ((struct kvm_enable_cap *)buf)->cap == KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) {
		/* The old core's bits come across instead: see klu_dirty_rebuilt(). */
		((struct kvm_enable_cap *)buf)->args[0] &= ~KVM_DIRTY_LOG_INITIALLY_SET;
	} else if (rec->ioctl == KVM_X86_SET_MSR_FILTER) {
		struct kvm_msr_filter *f = (void *)buf;
		size_t off = sizeof(*f);

		for (i = 0; i < KVM_MSR_FILTER_MAX_RANGES; i++) {
			f->ranges[i].bitmap = (__u8 __force *)scratch + off;
			off += BITS_TO_LONGS(f->ranges[i].nmsrs) * sizeof(long);
		}
	}
	i = copy_to_user(scratch, buf, rec->size) ? -EFAULT : 0;
	kfree(buf);
	return i ? i : (__force long)scratch;
}

/*
 * Replay @journal on the core file @core, staging arguments in @scratch (user memory of
 * the VMM's mm, which the caller uses).  KLU_REPLAY_CONFIG replays everything but the
 * irqfds and stops at the first error.  KLU_REPLAY_IRQFDS_ON and _OFF attach and detach
 * the irqfds (see "Interrupts during a move" in Documentation/design.rst), and
 * KLU_REPLAY_GROUPS_ON and _OFF add and delete a kvm-vfio device's VFIO groups; they go
 * on past an error, so that as many as possible are where they should be, and an irqfd
 * already attached (-EBUSY), a group already added (-EEXIST) or not there to delete
 * (-ENOENT) counts as done.  0, or the first error.
 */
int klu_journal_replay(struct list_head *journal, struct file *core, void __user *scratch,
		       size_t scratch_size, enum klu_replay what)
{
	struct klu_record *rec;
	int r, first = 0;
	long arg;

	list_for_each_entry(rec, journal, node) {
		bool irqfd = rec->ioctl == KVM_IRQFD, group = rec->ioctl == KVM_SET_DEVICE_ATTR;
		int fds[2] = { -1, -1 };

		if (what == KLU_REPLAY_CONFIG ? irqfd || group :
		    what == KLU_REPLAY_IRQFDS_ON || what == KLU_REPLAY_IRQFDS_OFF ? !irqfd :
		    !group)
			continue;
		if (rec->size > scratch_size)
			return -E2BIG;
		arg = klu_record_stage(rec, scratch, fds, what);
		if (arg < 0 && rec->size) {
			r = arg;
		} else {
			/* With the rights of the call it repeats, not the mover's. */
			const struct cred *was = override_creds(rec->cred);

			r = core->f_op->unlocked_ioctl(core, rec->ioctl, arg);
			revert_creds(was);
		}
		if (fds[0] >= 0)
			close_fd(fds[0]);
		if (fds[1] >= 0)
			close_fd(fds[1]);
		if ((r == -EBUSY && what == KLU_REPLAY_IRQFDS_ON) ||
		    (r == -EEXIST && what == KLU_REPLAY_GROUPS_ON) ||
		    (r == -ENOENT && what == KLU_REPLAY_GROUPS_OFF))
			r = 0;
		if (r < 0) {
			pr_err("%s ioctl 0x%x on core file %pD failed: %d\n",
			       what == KLU_REPLAY_IRQFDS_OFF || what == KLU_REPLAY_GROUPS_OFF ?
			       "detaching with" : "replaying", rec->ioctl, core, r);
			if (what == KLU_REPLAY_CONFIG)
				return r;
			first = first ?: r;
		}
	}
	return first;
}

/* Call @fn with the eventfd of each irqfd in @journal (for bypass.c, under its locks). */
void klu_journal_irqfds(struct list_head *journal, void (*fn)(struct eventfd_ctx *, void *),
			void *data)
{
	struct eventfd_ctx *ctx;
	struct klu_record *rec;

	list_for_each_entry(rec, journal, node) {
		if (rec->ioctl != KVM_IRQFD || !rec->files[0])
			continue;
		ctx = eventfd_ctx_fileget(rec->files[0]);
		if (IS_ERR(ctx))
			continue;
		fn(ctx, data);
		eventfd_ctx_put(ctx);
	}
}

/*
 * After a move, signal every resample eventfd once.  A level-triggered source that was
 * asserted while its irqfd was detached, and is still asserted, then fires again on the
 * new core (VFIO unmasks INTx on a resample and re-triggers if the line is still high);
 * for a source that is not asserted the resample is a no-op.
 */
void klu_journal_resample_kick(struct list_head *journal)
{
	struct eventfd_ctx *ctx;
	struct klu_record *rec;

	list_for_each_entry(rec, journal, node) {
		if (rec->ioctl != KVM_IRQFD || !rec->files[1])
			continue;
		ctx = eventfd_ctx_fileget(rec->files[1]);
		if (IS_ERR(ctx))
			continue;
		eventfd_signal(ctx, 1);
		eventfd_ctx_put(ctx);
	}
}
