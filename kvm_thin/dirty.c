// SPDX-License-Identifier: GPL-2.0
/*
 * Dirty-page logging across a move.  A memory slot with KVM_MEM_LOG_DIRTY_PAGES has its
 * dirty bitmap in the core that runs the VM, and the new core's starts empty.  With the
 * vCPUs stopped, the move reads the old core's bits as the VMM would
 * (KVM_GET_DIRTY_LOG on the old VM) and kvm_thin carries them: the VMM's next
 * KVM_GET_DIRTY_LOG on that slot returns the new core's bits and the carried ones.  In
 * KVM's plain mode a GET returns them once, as it clears; with
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 they stay until a KVM_CLEAR_DIRTY_LOG clears them,
 * as the core's own do.  What the guest writes after the move faults into the new
 * core's empty page tables, and the new core logs it.
 *
 * A vCPU that completes an exit on its old core after the move (files.c) may write guest
 * memory there (string I/O, an MMIO read into memory): that completion reads the old
 * VM's bits once more, by the slots as they were at the move.
 *
 * Where bits could have been cleared in a core without reaching kvm_thin (a fault in
 * the VMM's memory), or where what the old core logged cannot be read (a slot that
 * changed, or began logging, after the move), every page of the slot is marked: more
 * bits, never fewer.  Documentation/design.rst, "Dirty logging", says how many more a
 * move can add.
 *
 * dirty_lock is held over the VMM's memory (user copies, vm_mmap()) and calls into a
 * core's VM file, so nothing that a move or sysfs waits for is taken around it: it is
 * taken under vm->lock (read) by the VMM's own threads, never under files_lock, and
 * by the mover with vm->lock written, when none of them can hold it.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/compat.h>
#include <linux/kvm.h>
#include <linux/mman.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "thin.h"

/* The bits carried from an old core for one memory slot. */
struct klu_dirty {
	u64 npages;
	unsigned long bits[];
};

/* User bitmaps are read and written this much at a time. */
#define KLU_DIRTY_CHUNK	256

static long klu_vm_file_ioctl(struct file *core, unsigned int ioctl, unsigned long arg,
			      bool compat)
{
	if (compat && core->f_op->compat_ioctl)
		return core->f_op->compat_ioctl(core, ioctl, arg);
	return core->f_op->unlocked_ioctl(core, ioctl, arg);
}

/* What is carried for @slot of @npages pages, made if there is nothing yet. */
static struct klu_dirty *klu_dirty_bits(struct klu_vm *vm, u32 slot, u64 npages)
{
	struct klu_dirty *d = xa_load(&vm->dirty, slot), *old;

	lockdep_assert_held(&vm->dirty_lock);
	if (d && d->npages == npages)
		return d;
	/* npages <= KLU_SLOT_PAGES_MAX (journal.c): 256 MiB at most */
	d = kvzalloc(struct_size(d, bits, BITS_TO_LONGS(npages)),
		     GFP_KERNEL_ACCOUNT | __GFP_NOWARN);
	if (!d)
		return ERR_PTR(-ENOMEM);
	d->npages = npages;
	old = xa_store(&vm->dirty, slot, d, GFP_KERNEL_ACCOUNT);
	if (xa_is_err(old)) {
		kvfree(d);
		return ERR_PTR(xa_err(old));
	}
	kvfree(old);	/* a slot of another size: those bits were for what it was */
	return d;
}

/* Manual mode: clear in the core VM file @old the bits of @s just read into @ubits. */
static void klu_dirty_clear_core(struct file *old, const struct klu_dirty_slot *s,
				 void __user *buf, void __user *ubits)
{
	struct kvm_clear_dirty_log clear = {
		.slot = s->slot,
		.num_pages = s->npages,
		.dirty_bitmap = ubits,
	};

	if (!copy_to_user(buf, &clear, sizeof(clear)))
		old->f_op->unlocked_ioctl(old, KVM_CLEAR_DIRTY_LOG, (unsigned long)buf);
}

/*
 * Read the dirty bits of slot @s from the core VM file @old into what is carried.  @buf
 * is @size bytes of user memory in current->mm (the VMM's), the first 64 for the
 * argument; a bitmap too large for the rest gets a mapping of its own.  In manual
 * mode, what was read is cleared in @old too: a later read then brings only what is
 * new, not bits the VMM has cleared since.
 */
static int klu_dirty_read_slot(struct klu_vm *vm, struct file *old,
			       const struct klu_dirty_slot *s, void __user *buf,
			       size_t size)
{
	size_t bytes = BITS_TO_LONGS(s->npages) * sizeof(long), off, n, i;
	struct kvm_dirty_log log = { .slot = s->slot };
	void __user *ubits = buf + 64;
	unsigned long map = 0;
	u8 chunk[KLU_DIRTY_CHUNK];
	struct klu_dirty *d;
	long r;

	d = klu_dirty_bits(vm, s->slot, s->npages);
	if (IS_ERR(d))
		return PTR_ERR(d);
	if (bytes > size - 64) {
		map = vm_mmap(NULL, 0, bytes, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, 0);
		if (IS_ERR_VALUE(map))
			return (long)map;
		ubits = (void __user *)map;
	}
	log.dirty_bitmap = ubits;
	/* If this copy fails, the core has its bits still. */
	r = copy_to_user(buf, &log, sizeof(log)) ? -EFAULT : 0;
	if (!r) {
		r = old->f_op->unlocked_ioctl(old, KVM_GET_DIRTY_LOG, (unsigned long)buf);
		for (off = 0; !r && off < bytes; off += n) {
			n = min(bytes - off, sizeof(chunk));
			if (copy_from_user(chunk, ubits + off, n)) {
				r = -EFAULT;
				break;
			}
			for (i = 0; i < n; i++)
				((u8 *)d->bits)[off + i] |= chunk[i];
		}
		/* The core may have cleared what it gave: mark it all rather than lose any. */
		if (r)
			bitmap_set(d->bits, 0, d->npages);
		else if (READ_ONCE(vm->dirty_manual) & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)
			klu_dirty_clear_core(old, s, buf, ubits);  /* if not: more bits later */
	}
	if (map)
		vm_munmap(map, bytes);
	return r;
}

static void klu_dirty_read_failed(struct klu_vm *vm, u32 slot, struct file *old, int r)
{
	pr_err_ratelimited("VM %lu: reading slot 0x%x's dirty log from core file %pD failed (%d)%s\n",
			   vm->id, slot, old, r,
			   r == -ENOMEM ? "" : ": every page of it is marked dirty");
}

/*
 * A move, with the VM quiesced (vm->lock written, files_lock held): carry the old core's
 * dirty bits.  @buf: the move's scratch.  The slots that log go to @slots (for the exits
 * left to complete); their number, or -errno.
 */
int klu_dirty_move(struct klu_vm *vm, struct file *old_vm, void __user *buf, size_t size,
		   struct klu_dirty_slot **slots)
{
	int i, n, r = 0, e;

	lockdep_assert_held(&vm->files_lock);
	n = klu_journal_log_slots(vm, slots);
	if (n <= 0)
		return n;
	mutex_lock(&vm->dirty_lock);
	for (i = 0; i < n; i++) {
		e = klu_dirty_read_slot(vm, old_vm, &(*slots)[i], buf, size);
		if (e)
			klu_dirty_read_failed(vm, (*slots)[i].slot, old_vm, e);
		r = r ?: e;
	}
	mutex_unlock(&vm->dirty_lock);
	if (!r)
		return n;
	kvfree(*slots);
	*slots = NULL;
	return r;
}

/*
 * @kf completed an exit on its old core, which may have written guest memory there: that
 * core's VM logged it, in the slots it had at the move (kf->pending_slots).  A slot that
 * logs now but did not then, or not in the same size, has every page marked.  Under
 * vm->lock (read); kf->pending_buf is free for this.  0, or -errno with the old core's
 * bits not all read: the caller tries again rather than lose them.
 */
int klu_dirty_after_exit(struct klu_file *kf)
{
	struct klu_dirty_slot *now, *then = NULL;
	struct klu_vm *vm = kf->vm;
	int i, j, n, r = 0, e;
	struct klu_dirty *d;

	if (!kf->pending_vm)
		return 0;
	mutex_lock(&vm->files_lock);
	n = klu_journal_log_slots(vm, &now);
	mutex_unlock(&vm->files_lock);
	if (n <= 0)
		return n;
	mutex_lock(&vm->dirty_lock);
	for (i = 0; i < n; i++) {
		for (j = 0, then = NULL; j < kf->pending_nslots && !then; j++)
			if (kf->pending_slots[j].slot == now[i].slot &&
			    kf->pending_slots[j].npages == now[i].npages)
				then = &kf->pending_slots[j];
		if (then) {
			e = klu_dirty_read_slot(vm, kf->pending_vm, then, kf->pending_buf,
						KLU_SCRATCH_SIZE);
			if (e)
				klu_dirty_read_failed(vm, now[i].slot, kf->pending_vm, e);
		} else {
			d = klu_dirty_bits(vm, now[i].slot, now[i].npages);
			e = PTR_ERR_OR_ZERO(d);
			if (!e)
				bitmap_set(d->bits, 0, d->npages);
		}
		r = r ?: e;
	}
	mutex_unlock(&vm->dirty_lock);
	kvfree(now);
	return r;
}

/* The carried bits of @d into the VMM's bitmap at @ubits, which the core just wrote. */
static int klu_dirty_or_user(struct klu_dirty *d, void __user *ubits)
{
	size_t bytes = BITS_TO_LONGS(d->npages) * sizeof(long), off, n, i;
	u8 chunk[KLU_DIRTY_CHUNK];

	for (off = 0; off < bytes; off += n) {
		n = min(bytes - off, sizeof(chunk));
		if (copy_from_user(chunk, ubits + off, n))
			return -EFAULT;
		for (i = 0; i < n; i++)
			chunk[i] |= ((u8 *)d->bits)[off + i];
		if (copy_to_user(ubits + off, chunk, n))
			return -EFAULT;
	}
	return 0;
}

/* Clear in @d what the VMM cleared: @num pages from @first (a multiple of 64), @ubits. */
static int klu_dirty_clear_user(struct klu_dirty *d, u64 first, u32 num,
				const void __user *ubits)
{
	size_t bytes = DIV_ROUND_UP(num, 8), off, n, i;
	u8 *bits = (u8 *)d->bits + first / 8;
	u8 chunk[KLU_DIRTY_CHUNK];

	/* The core checked its own copy of the argument; this is ours. */
	if (first & 63 || first > d->npages || num > d->npages - first)
		return 0;
	for (off = 0; off < bytes; off += n) {
		n = min(bytes - off, sizeof(chunk));
		if (copy_from_user(chunk, ubits + off, n))
			return -EFAULT;
		if (off + n == bytes && num % 8)
			chunk[n - 1] &= GENMASK(num % 8 - 1, 0);
		for (i = 0; i < n; i++)
			bits[off + i] &= ~chunk[i];
	}
	return 0;
}

/*
 * KVM_GET_DIRTY_LOG or KVM_CLEAR_DIRTY_LOG on the VM file @core, for a VM with carried
 * bits.  The argument is read once, here, and the core reads it again: a VMM that
 * changes it meanwhile gets its own VM's log wrong, and nothing worse.
 */
long klu_dirty_ioctl(struct klu_vm *vm, struct file *core, unsigned int ioctl,
		     unsigned long arg, bool compat)
{
	struct kvm_clear_dirty_log clear;
	struct kvm_dirty_log log;
	void __user *ubits;
	struct klu_dirty *d;
	u32 slot;
	long r;

	if (ioctl == KVM_GET_DIRTY_LOG) {
		if (copy_from_user(&log, (void __user *)arg, sizeof(log)))
			return -EFAULT;
		slot = log.slot;
		/* compat_kvm_dirty_log: a 32-bit pointer where the union starts */
		ubits = compat ? compat_ptr((u32)log.padding2) : log.dirty_bitmap;
	} else {
		if (copy_from_user(&clear, (void __user *)arg, sizeof(clear)))
			return -EFAULT;
		slot = clear.slot;
		ubits = compat ? compat_ptr((u32)clear.padding2) : clear.dirty_bitmap;
	}
	mutex_lock(&vm->dirty_lock);
	r = klu_vm_file_ioctl(core, ioctl, arg, compat);
	d = r ? NULL : xa_load(&vm->dirty, slot);
	if (d && ioctl == KVM_CLEAR_DIRTY_LOG) {
		r = klu_dirty_clear_user(d, clear.first_page, clear.num_pages, ubits);
		if (!r && bitmap_empty(d->bits, d->npages)) {
			xa_erase(&vm->dirty, slot);
			kvfree(d);
		}
	} else if (d) {
		r = klu_dirty_or_user(d, ubits);
		/* Plain mode: a GET clears, and the VMM has them now. */
		if (!r && !(READ_ONCE(vm->dirty_manual) & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE)) {
			xa_erase(&vm->dirty, slot);
			kvfree(d);
		}
	}
	mutex_unlock(&vm->dirty_lock);
	return r;
}

/* Slot @slot changed, or stopped logging: its carried bits go, as the core's bitmap. */
void klu_dirty_slot_changed(struct klu_vm *vm, u32 slot)
{
	struct klu_dirty *d;

	if (xa_empty(&vm->dirty))
		return;
	mutex_lock(&vm->dirty_lock);
	d = xa_erase(&vm->dirty, slot);
	mutex_unlock(&vm->dirty_lock);
	kvfree(d);
}

/*
 * The new core has the VM's journal.  KVM_DIRTY_LOG_INITIALLY_SET was left out of its
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 for that (journal.c), so that its slots start with
 * no bits set rather than all: the old core's come across instead.  Now the VMM's
 * setting, for slots it makes from here on.
 */
int klu_dirty_rebuilt(struct klu_vm *vm, struct file *new_vm, void __user *scratch)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args[0] = READ_ONCE(vm->dirty_manual),
	};

	if (!(cap.args[0] & KVM_DIRTY_LOG_INITIALLY_SET))
		return 0;
	if (copy_to_user(scratch, &cap, sizeof(cap)))
		return -EFAULT;
	return new_vm->f_op->unlocked_ioctl(new_vm, KVM_ENABLE_CAP, (unsigned long)scratch);
}

void klu_dirty_free(struct klu_vm *vm)
{
	struct klu_dirty *d;
	unsigned long slot;

	xa_for_each(&vm->dirty, slot, d)
		kvfree(d);
	xa_destroy(&vm->dirty);
}
