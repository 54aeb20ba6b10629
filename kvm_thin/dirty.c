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
 * VM's bits once more.
 *
 * Where bits could have been cleared in a core without reaching kvm_thin (a fault in
 * the VMM's memory), every page of the slot is marked: more bits, never fewer.
 * Documentation/design.rst, "Dirty logging", says how many more a move can add.
 *
 * dirty_lock nests inside vm->lock (read) and files_lock.  Under it are only the
 * VMM's mmap lock (user copies, vm_mmap()) and calls into a core's VM file.
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
	d = kvzalloc(struct_size(d, bits, BITS_TO_LONGS(npages)), GFP_KERNEL_ACCOUNT);
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

/*
 * Read the dirty bits of slot @s from the core VM file @old into what is carried.  @buf
 * is @size bytes of user memory in current->mm (the VMM's), the first 64 for the
 * argument; a bitmap too large for the rest gets a mapping of its own.
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
	r = copy_to_user(buf, &log, sizeof(log)) ? -EFAULT : 0;
	if (!r)
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
		bitmap_fill(d->bits, d->npages);
	if (map)
		vm_munmap(map, bytes);
	return r;
}

static int klu_dirty_read(struct klu_vm *vm, struct file *old, struct klu_dirty_slot *s,
			  int n, void __user *buf, size_t size)
{
	int i, r = 0, e;

	mutex_lock(&vm->dirty_lock);
	for (i = 0; i < n; i++) {
		e = klu_dirty_read_slot(vm, old, &s[i], buf, size);
		if (e)
			pr_err("VM %lu: reading slot 0x%x's dirty log from core file %pD failed (%d): every page of it is marked dirty\n",
			       vm->id, s[i].slot, old, e);
		r = r ?: e;
	}
	mutex_unlock(&vm->dirty_lock);
	return r;
}

/*
 * A move, with the VM quiesced (vm->lock written, files_lock held): carry the old core's
 * dirty bits.  @buf: the move's scratch.  The number of slots that log, or -errno.
 */
int klu_dirty_move(struct klu_vm *vm, struct file *old_vm, void __user *buf, size_t size)
{
	struct klu_dirty_slot *s;
	int n, r;

	lockdep_assert_held(&vm->files_lock);
	n = klu_journal_log_slots(vm, &s);
	if (n <= 0)
		return n;
	r = klu_dirty_read(vm, old_vm, s, n, buf, size);
	kfree(s);
	return r ?: n;
}

/*
 * @kf completed an exit on its old core, which may have written guest memory there: that
 * core's VM logged it.  Under vm->lock (read); kf->pending_buf is free for this.
 */
void klu_dirty_after_exit(struct klu_file *kf)
{
	struct klu_vm *vm = kf->vm;
	struct klu_dirty_slot *s;
	int n;

	if (!kf->pending_vm)
		return;
	mutex_lock(&vm->files_lock);
	n = klu_journal_log_slots(vm, &s);
	mutex_unlock(&vm->files_lock);
	if (n < 0)
		pr_err_ratelimited("VM %lu vCPU %u: no memory to read the old core's dirty log after its exit\n",
				   vm->id, kf->vcpu_id);
	if (n <= 0)
		return;
	klu_dirty_read(vm, kf->pending_vm, s, n, kf->pending_buf, KLU_SCRATCH_SIZE);
	kfree(s);
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

/* Slot @slot changed (@logs: it logs dirty pages, in the same geometry): its bits go. */
void klu_dirty_slot_changed(struct klu_vm *vm, u32 slot, bool same)
{
	struct klu_dirty *d;

	if (same || xa_empty(&vm->dirty))
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
