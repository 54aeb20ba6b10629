// SPDX-License-Identifier: GPL-2.0
/*
 * The VM, vCPU and device files the VMM holds are kvm_thin's.  Each one stands for a
 * file of the core that runs the VM: kvm_thin takes the core's file out of the VMM's fd
 * table as soon as the core creates it, keeps it privately, and forwards ioctls and
 * mmap faults to it.  A live move (move.c) replaces the core file behind the VMM's file,
 * so the VMM's fds and mappings stay valid when its VM changes core.
 *
 * Statistics files (KVM_GET_STATS_FD) are kvm_thin's too, and follow the VM (stats.c).
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/highmem.h>
#include <linux/kvm.h>
#include <linux/mm.h>
#include <linux/slab.h>

#include "thin.h"

static const struct file_operations klu_file_fops;

/* Take the file at @fd out of the caller's table, as close(2) would, keeping a reference. */
struct file *klu_take_fd(int fd)
{
	struct file *file = close_fd_get_file(fd);

	if (!file)
		return NULL;
	get_file(file);
	filp_close(file, current->files);
	return file;
}

/* Put @file (our reference) into the caller's table: the fd, or -errno. */
int klu_give_fd(struct file *file)
{
	int fd = get_unused_fd_flags(O_CLOEXEC);

	if (fd >= 0)
		fd_install(fd, get_file(file));
	return fd;
}

static struct klu_file *klu_file_alloc(enum klu_file_kind kind, struct file *core)
{
	struct klu_file *kf = kzalloc(sizeof(*kf), GFP_KERNEL_ACCOUNT);

	if (!kf)
		return NULL;
	kf->kind = kind;
	kf->core = core;
	spin_lock_init(&kf->run_lock);
	mutex_init(&kf->finish_lock);
	INIT_LIST_HEAD(&kf->journal);
	return kf;
}

/*
 * Is @file the one the core just made for @vm: a file whose ioctl handler is in the
 * core's generic module (KVM's VM, vCPU and device files have no f_op->owner), named
 * as KVM names it?  The fd number comes from the core, but another thread of the VMM can put
 * another file there first (dup2()), and a device's number is read back from the VMM's
 * memory, which it can rewrite; kvm_thin would then forward calls to a file that is
 * not a KVM file at all, or treat an eventfd as a vCPU.
 */
static bool klu_core_file_ok(struct klu_vm *vm, struct file *file, enum klu_file_kind kind,
			     u32 vcpu_id)
{
	const char *name = file_dentry(file)->d_name.name;
	char want[24], mod[MODULE_NAME_LEN];

	if (!file->f_op->unlocked_ioctl || !file->private_data)
		return false;
	klu_module_name((unsigned long)file->f_op->unlocked_ioctl, mod, sizeof(mod));
	if (strcmp(mod, vm->core->generic))
		return false;
	switch (kind) {
	case KLU_FILE_VM:
		return !strcmp(name, "kvm-vm");
	case KLU_FILE_VCPU:
		snprintf(want, sizeof(want), "kvm-vcpu:%u", vcpu_id);
		return !strcmp(name, want);
	default:	/* a device: its type's name, but neither of those */
		return strcmp(name, "kvm-vm") && strncmp(name, "kvm-vcpu:", 9);
	}
}

/*
 * Replace the core's file at @fd in the caller's table by a kvm_thin file of @kind that
 * forwards to it and belongs to @vm.  Returns the new fd (usually @fd again), or -errno;
 * on error the core's file is closed, which undoes its creation.
 */
static int klu_file_wrap(struct klu_vm *vm, int fd, enum klu_file_kind kind, u32 vcpu_id)
{
	struct klu_file *kf;
	struct file *core;
	int r;

	r = -EBADF;
	core = klu_take_fd(fd);
	if (!core)	/* another thread of the VMM closed it already */
		goto out_lost;
	if (!klu_core_file_ok(vm, core, kind, vcpu_id)) {
		/*
		 * The VMM's own doing: its file is closed (as close(2) would), and so is
		 * the core's, which the VMM replaced; what the core made stays with the VM
		 * without a file, as after a close.
		 */
		pr_warn_ratelimited("pid %d: fd %d is not the file core %s just created (%s), but another (%s): refused\n",
				    task_pid_nr(current), fd, vm->core->tag,
				    kind == KLU_FILE_VM ? "kvm-vm" :
				    kind == KLU_FILE_VCPU ? "kvm-vcpu" : "a device",
				    file_dentry(core)->d_name.name);
		fput(core);
		goto out_lost;
	}
	r = -ENOMEM;
	kf = klu_file_alloc(kind, core);
	if (!kf)
		goto out_core;
	kf->vcpu_id = vcpu_id;
	if (kind == KLU_FILE_VM) {	/* KVM's VM file holds its struct kvm */
		vm->kvm = core->private_data;
		klu_owner_set(vm->kvm, vm->core, vm);
	} else if (kind == KLU_FILE_DEVICE) {
		WRITE_ONCE(vm->has_device, true);
		/* A move makes kvm-vfio again (move.c), and no other device. */
		if (strcmp(file_dentry(core)->d_name.name, "kvm-vfio"))
			klu_journal_refuse(vm, "a KVM device other than kvm-vfio");
	}
	klu_vm_add_file(vm, kf);
	/*
	 * An inode of its own (the "secure" variant), so that a move can zap the VMM's
	 * mappings of this file alone.  The core's name ("kvm-vm", "kvm-vcpu:N", ...) stays
	 * what /proc shows.
	 */
	r = anon_inode_getfd_secure(file_dentry(core)->d_name.name, &klu_file_fops, kf,
				    O_RDWR | O_CLOEXEC, NULL);
	if (r >= 0)
		return r;
	klu_vm_del_file(vm, kf);
	klu_vm_put(vm);
	kfree(kf);
out_core:
	pr_warn_ratelimited("pid %d: cannot stand in for %s (%d); it is closed again\n",
			    task_pid_nr(current), file_dentry(core)->d_name.name, r);
	fput(core);
out_lost:
	/* A vCPU or device of the core's without a file of ours: a move would drop it. */
	if (kind != KLU_FILE_VM)
		klu_journal_refuse(vm, kind == KLU_FILE_VCPU ?
				   "a vCPU of the core's has no kvm_thin file" :
				   "a device of the core's has no kvm_thin file");
	return r;
}

/* KVM_CREATE_VM on @core returned @r: a VM fd to wrap, or an error. */
long klu_dev_vm_created(struct klu_core *core, unsigned long type, long r)
{
	struct klu_vm *vm;

	if (r < 0)
		return r;
	vm = klu_vm_new(core, type);
	if (!vm) {
		struct file *file = klu_take_fd(r);

		if (file)
			fput(file);
		return -ENOMEM;
	}
	r = klu_file_wrap(vm, r, KLU_FILE_VM, 0);
	klu_vm_put(vm);		/* the files hold it now */
	return r;
}

/*
 * A KVM_CREATE_DEVICE the core accepted: a probe (KVM_CREATE_DEVICE_TEST) creates
 * nothing, so it is neither wrapped nor journalled.  Its flags are read before the call
 * (@before, -1 if that read faulted) and again here, after it: a VMM that changed them
 * while the core read them may have got a device of the core's with no file of ours,
 * which a move would drop, so its VM becomes unmovable.
 */
static bool klu_device_probe(struct klu_vm *vm, unsigned long arg, s64 before)
{
	struct kvm_create_device __user *ucd = (void __user *)arg;
	u32 flags;

	if (get_user(flags, &ucd->flags) || flags != before) {
		klu_journal_refuse(vm, "KVM_CREATE_DEVICE's flags changed during the call");
		return true;	/* no fd of ours to hand out */
	}
	return flags & KVM_CREATE_DEVICE_TEST;
}

/* KVM_CREATE_DEVICE returned its fd inside the argument: wrap it there. */
static long klu_file_wrap_device(struct klu_vm *vm, unsigned long arg)
{
	struct kvm_create_device __user *ucd = (void __user *)arg;
	int fd, r;

	if (get_user(fd, &ucd->fd)) {
		/* The core's device lives on with no file of ours: a move would drop it. */
		klu_journal_refuse(vm, "a device of the core's has no kvm_thin file");
		return -EFAULT;
	}
	r = klu_file_wrap(vm, fd, KLU_FILE_DEVICE, 0);
	if (r < 0)
		return r;
	if (put_user(r, &ucd->fd)) {
		close_fd(r);
		return -EFAULT;
	}
	return 0;
}

static long klu_core_ioctl(struct file *core, unsigned int ioctl, unsigned long arg,
			   bool compat)
{
	if (compat && core->f_op->compat_ioctl)
		return core->f_op->compat_ioctl(core, ioctl, arg);
	return core->f_op->unlocked_ioctl(core, ioctl, arg);
}

static void klu_pending_vm_put(struct klu_file *kf)
{
	if (kf->pending_vm)
		fput(kf->pending_vm);
	kf->pending_vm = NULL;
	kvfree(kf->pending_slots);
	kf->pending_slots = NULL;
	kf->pending_nslots = 0;
}

/*
 * The state that completing an exit reads or writes: the registers, FPU/XSAVE and XCRs,
 * special registers, MSRs (an exit to the VMM for RDMSR/WRMSR), events and nested state;
 * KVM_INTERRUPT and KVM_X86_SET_MCE queue an event, KVM_TRANSLATE reads CR3.  Between a
 * move and a vCPU's next KVM_RUN, while its exit is still the old vCPU's, these calls go
 * to the old vCPU, and the state follows the exit to the new vCPU when it completes
 * (klu_move_vcpu_state()).  The rest of the vCPU went to the new vCPU at the move and
 * lives there, where interrupts may have reached it since: the LAPIC, MP state, debug
 * registers, CPUID, TSC, an NMI or SMI, the statistics.
 */
static bool klu_exit_state(unsigned int ioctl)
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
	case KVM_GET_VCPU_EVENTS:
	case KVM_SET_VCPU_EVENTS:
	case KVM_GET_NESTED_STATE:
	case KVM_SET_NESTED_STATE:
	case KVM_INTERRUPT:
	case KVM_X86_SET_MCE:
	case KVM_TRANSLATE:
		return true;
	}
	return false;
}

/*
 * A call on exit state (klu_exit_state()) while @kf's exit is still the old vCPU's: to
 * the old vCPU, under finish_lock, so that a completion in another thread cannot copy
 * the state across in the meantime and lose it.  A write goes to the new vCPU as well,
 * where it stays for what the completion does not carry: MSR_IA32_TSC and the TSC
 * deadline, MCE banks, an NMI or SMM set through the events, nested state turned off.
 * The old vCPU's answer is the call's.  *@pending is false if the exit is done by now.
 */
static long klu_pending_call(struct klu_file *kf, unsigned int ioctl, unsigned long arg,
			     bool compat, bool *pending)
{
	long r;

	if (mutex_lock_killable(&kf->finish_lock)) {
		*pending = true;
		return -EINTR;
	}
	*pending = kf->pending;		/* set to NULL only under finish_lock */
	if (!*pending) {
		mutex_unlock(&kf->finish_lock);
		return 0;
	}
	r = klu_core_ioctl(kf->pending, ioctl, arg, compat);
	switch (ioctl) {
	case KVM_SET_REGS:
	case KVM_SET_SREGS:
	case KVM_SET_SREGS2:
	case KVM_SET_FPU:
	case KVM_SET_XSAVE:
	case KVM_SET_XCRS:
	case KVM_SET_MSRS:
	case KVM_SET_VCPU_EVENTS:
	case KVM_SET_NESTED_STATE:
	case KVM_INTERRUPT:
	case KVM_X86_SET_MCE:
		if (r >= 0)
			klu_core_ioctl(kf->core, ioctl, arg, compat);
	}
	mutex_unlock(&kf->finish_lock);
	return r;
}

/*
 * An exit the VMM had not completed when its VM moved (it was handling it, or holds the
 * vCPU in userspace after it) stays with the old core's vCPU, the only one that knows
 * how to finish it: KVM keeps that in a private callback.  Until the VMM's next KVM_RUN
 * the vCPU's calls on the state an exit touches (klu_exit_state()) go to that old vCPU,
 * as if it had not moved yet.  The next
 * KVM_RUN finishes the exit there: the pages the VMM wrote its answer into (the new
 * core's) are copied back, the old vCPU runs once with immediate_exit set, which
 * completes the exit and returns, and then the vCPU's whole state goes to the new
 * core.  A completion that needs the VMM again (string I/O, MMIO in pieces) makes a new
 * exit, which goes to the VMM as KVM would give it: 1.  Else 0, or -errno.
 */
static int klu_vcpu_finish_pending(struct klu_file *kf)
{
	struct file *old = kf->pending, *cur = kf->core, *files[2];
	struct kvm_run *run;
	struct page *page;
	u8 saved;
	long r, e;

	r = klu_copy_page(cur, old, 0) ?: klu_copy_page(cur, old, KVM_PIO_PAGE_OFFSET);
	if (r)
		return r;
	page = klu_core_page(old, 0);
	if (IS_ERR(page))
		return PTR_ERR(page);
	run = page_address(page);
	saved = READ_ONCE(run->immediate_exit);
	WRITE_ONCE(run->immediate_exit, 1);
	r = klu_core_ioctl(old, KVM_RUN, 0, false);
	WRITE_ONCE(run->immediate_exit, saved);
	put_page(page);
	/*
	 * What the completion wrote is in the old VM's dirty log.  An error leaves bits
	 * there: this vCPU stays pending, and its next KVM_RUN reads them again (with a
	 * new exit, at its completion).
	 */
	e = klu_dirty_after_exit(kf);
	if (!r) {
		r = klu_copy_page(old, cur, 0) ?: klu_copy_page(old, cur, KVM_PIO_PAGE_OFFSET);
		return r ?: 1;
	}
	if (r != -EINTR)
		return r;
	if (e)
		return e;
	r = klu_move_vcpu_state(kf->vm, old, cur, kf->pending_buf);
	/* The old vCPU only gave its state: a copy that ran out of memory runs again. */
	if (r == -ENOMEM || r == -EINTR)
		return r;
	if (r) {
		/* The new core refused it, or the VMM took the buffer: no way to go on. */
		mutex_lock(&kf->vm->files_lock);
		klu_vm_refuse(kf->vm, true,
			      "vCPU %u's state did not follow its exit to the new core (%ld)",
			      kf->vcpu_id, r);
		mutex_unlock(&kf->vm->files_lock);
		return -EIO;
	}
	vm_munmap((unsigned long)kf->pending_buf, KLU_SCRATCH_SIZE);
	spin_lock(&kf->run_lock);
	kf->pending = NULL;
	spin_unlock(&kf->run_lock);
	kf->pending_buf = NULL;
	/* The old vCPU and VM: maybe the old VM's last references, closed off this thread. */
	files[0] = old;
	files[1] = kf->pending_vm;
	kf->pending_vm = NULL;
	klu_pending_vm_put(kf);
	klu_close_later(kf->vm, files, 2);
	return 0;
}

/*
 * KVM_RUN.  While a move is under way the vCPU parks here: a thread the move kicked out
 * of the guest comes back through KVM_EXIT_INTR and -EINTR like after any signal, and
 * its next KVM_RUN waits for the move to finish, then runs on whatever core the VM is on.
 */
static long klu_vcpu_run(struct klu_file *kf, unsigned long arg, bool compat)
{
	struct klu_vm *vm = kf->vm;
	long r;

	for (;;) {
		if (down_read_killable(&vm->lock))
			return -EINTR;
		spin_lock(&kf->run_lock);
		kf->run_task = current;
		spin_unlock(&kf->run_lock);
		smp_mb();	/* pairs with klu_move_kick(): see moving, or get kicked */
		if (READ_ONCE(vm->dead)) {
			r = -EIO;
			goto out;
		}
		if (!READ_ONCE(vm->moving))
			break;
		spin_lock(&kf->run_lock);
		kf->run_task = NULL;
		spin_unlock(&kf->run_lock);
		up_read(&vm->lock);
		if (wait_event_killable(vm->wq, !READ_ONCE(vm->moving)))
			return -EINTR;
	}
	/*
	 * pending only goes from set to NULL while vm->lock is held for reading.  Two
	 * threads of the VMM may call KVM_RUN on this vCPU at once (KVM lets them queue on
	 * the vCPU's mutex); the first completes the old vCPU's exit, and closes it, and
	 * the other then runs on the new core.
	 */
	if (READ_ONCE(kf->pending)) {
		if (mutex_lock_killable(&kf->finish_lock)) {
			r = -EINTR;
			goto out;
		}
		r = kf->pending ? klu_vcpu_finish_pending(kf) : 0;
		mutex_unlock(&kf->finish_lock);
		if (r < 0)
			pr_err_ratelimited("VM %lu vCPU %u: completing its exit on the old core failed (%ld)\n",
					   vm->id, kf->vcpu_id, r);
		if (r)
			goto out;
	}
	r = klu_core_ioctl(kf->core, KVM_RUN, arg, compat);
out:
	if (r > 0)	/* a new exit for the VMM, from the completion */
		r = 0;
	/* A return to the VMM with an exit for it to handle: completed by the next run. */
	WRITE_ONCE(kf->exit_pending, r == 0);
	spin_lock(&kf->run_lock);
	kf->run_task = NULL;
	spin_unlock(&kf->run_lock);
	if (READ_ONCE(vm->moving)) {
		atomic_inc(&vm->stops);
		wake_up_all(&vm->wq);
	}
	up_read(&vm->lock);
	return r;
}

static long klu_file_call(struct file *filp, unsigned int ioctl, unsigned long arg,
			  bool compat)
{
	struct klu_file *kf = filp->private_data;
	struct klu_vm *vm = kf->vm;
	struct klu_record *rec;
	bool probe, pending = false;
	s64 dev_flags = -1;
	long r;

	if (kf->kind == KLU_FILE_VCPU && ioctl == KVM_RUN)
		return klu_vcpu_run(kf, arg, compat);
	if (kf->kind == KLU_FILE_VM && ioctl == KVM_CREATE_DEVICE) {
		u32 f;

		if (!get_user(f, &((struct kvm_create_device __user *)arg)->flags))
			dev_flags = f;
	}
	/* The journal's copy of the argument is read before the core reads its own. */
	rec = klu_journal_take(kf, ioctl, arg);
	if (down_read_killable(&vm->lock)) {
		klu_journal_untake(rec);
		return -EINTR;
	}
	/* As KVM does for a VM it found broken (KVM_BUG_ON): every ioctl fails. */
	if (READ_ONCE(vm->dead)) {
		up_read(&vm->lock);
		klu_journal_untake(rec);
		return -EIO;
	}
	/*
	 * A vCPU with an exit to complete on its old core has its state there; its
	 * statistics are the new core's (stats.c follows the running vCPU).
	 */
	if (kf->kind == KLU_FILE_VCPU && klu_exit_state(ioctl) && READ_ONCE(kf->pending))
		r = klu_pending_call(kf, ioctl, arg, compat, &pending);
	if (!pending) {
		if (kf->kind == KLU_FILE_VM && !xa_empty(&vm->dirty) &&
		    (ioctl == KVM_GET_DIRTY_LOG || ioctl == KVM_CLEAR_DIRTY_LOG))
			r = klu_dirty_ioctl(vm, kf->core, ioctl, arg, compat);
		else
			r = klu_core_ioctl(kf->core, ioctl, arg, compat);
	}
	probe = kf->kind == KLU_FILE_VM && ioctl == KVM_CREATE_DEVICE && r >= 0 &&
		klu_device_probe(vm, arg, dev_flags);
	if (r >= 0 && !probe)
		klu_journal_note(kf, ioctl, arg, rec);
	else
		klu_journal_untake(rec);
	if (ioctl == KVM_GET_STATS_FD && r >= 0 && kf->kind != KLU_FILE_DEVICE)
		r = klu_stats_wrap(kf, filp, r);
	if (kf->kind == KLU_FILE_VM) {
		if (ioctl == KVM_CREATE_VCPU && r >= 0)
			r = klu_file_wrap(vm, r, KLU_FILE_VCPU, arg);
		else if (ioctl == KVM_CREATE_DEVICE && r >= 0 && !probe)
			r = klu_file_wrap_device(vm, arg);
	}
	up_read(&vm->lock);
	return r;
}

static long klu_file_ioctl(struct file *filp, unsigned int ioctl, unsigned long arg)
{
	return klu_file_call(filp, ioctl, arg, false);
}

#ifdef CONFIG_COMPAT
static long klu_file_compat_ioctl(struct file *filp, unsigned int ioctl,
				  unsigned long arg)
{
	return klu_file_call(filp, ioctl, arg, true);
}
#endif

/*
 * The page at @pgoff of a core's vCPU file, referenced, as the core's own fault handler
 * gives it.  KVM's handler reads only the file and the page offset from the fault, so a
 * stand-in area that names the core's file is all it needs.
 */
struct page *klu_core_page(struct file *core, pgoff_t pgoff)
{
	struct vm_area_struct area = {
		.vm_file = core,
		.vm_flags = VM_READ | VM_WRITE | VM_SHARED,
		.vm_pgoff = pgoff,
		.vm_start = 0,
		.vm_end = PAGE_SIZE,
	};
	struct vm_fault vmf = { .vma = &area, .pgoff = pgoff };
	vm_fault_t fault;
	int r;

	if (!core->f_op->mmap)
		return ERR_PTR(-ENODEV);
	r = core->f_op->mmap(core, &area);
	if (r)
		return ERR_PTR(r);
	if (!area.vm_ops || !area.vm_ops->fault)
		return ERR_PTR(-ENODEV);
	fault = area.vm_ops->fault(&vmf);
	if (fault & VM_FAULT_ERROR)
		return ERR_PTR(-EFAULT);
	return vmf.page;
}

/* Copy page @pgoff of the core vCPU file @from to the same page of @to. */
int klu_copy_page(struct file *from, struct file *to, pgoff_t pgoff)
{
	struct page *src = klu_core_page(from, pgoff), *dst;

	if (IS_ERR(src))
		return PTR_ERR(src);
	dst = klu_core_page(to, pgoff);
	if (IS_ERR(dst)) {
		put_page(src);
		return PTR_ERR(dst);
	}
	copy_highpage(dst, src);
	put_page(dst);
	put_page(src);
	return 0;
}

/*
 * A fault in the VMM's mapping of one of our files: the page of the core that runs the
 * VM now.  During a move the fault waits, without the mmap lock (the move creates a VM,
 * which takes it), so the VMM never writes to a page the move has already copied.
 */
static vm_fault_t klu_file_fault(struct vm_fault *vmf)
{
	struct klu_file *kf = vmf->vma->vm_file->private_data;
	struct klu_vm *vm = kf->vm;
	struct page *page;

	if (!down_read_trylock(&vm->lock)) {
		/*
		 * A fault may wait (and retry) as often as a move holds the lock: the VMM's
		 * own access must not get SIGBUS because a second move followed the one it
		 * waited for.  Only a caller that cannot drop the mmap lock (a remote
		 * get_user_pages(), /proc/<pid>/mem) fails, with EFAULT, mid-move.
		 */
		if (!(vmf->flags & FAULT_FLAG_ALLOW_RETRY))
			return VM_FAULT_SIGBUS;
		if (vmf->flags & FAULT_FLAG_RETRY_NOWAIT)
			return VM_FAULT_RETRY;
		klu_vm_get(vm);
		mmap_read_unlock(vmf->vma->vm_mm);
		wait_event_killable(vm->wq, !READ_ONCE(vm->moving));
		klu_vm_put(vm);
		return VM_FAULT_RETRY;
	}
	page = klu_core_page(kf->core, vmf->pgoff);
	up_read(&vm->lock);
	if (IS_ERR(page))
		return VM_FAULT_SIGBUS;
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct klu_file_vm_ops = {
	.fault = klu_file_fault,
};

static int klu_file_mmap(struct file *filp, struct vm_area_struct *vma)
{
	struct klu_file *kf = filp->private_data;
	struct vm_area_struct shadow = *vma;
	struct file *core;
	int r;

	/*
	 * Not under vm->lock: the mmap lock is held here, and a move takes the mmap lock
	 * while it holds vm->lock.  The core's mmap only checks the area and names its
	 * fault handler; the faults themselves go through klu_file_fault(), which waits
	 * for a move.
	 */
	spin_lock(&kf->run_lock);
	core = get_file(kf->core);
	spin_unlock(&kf->run_lock);
	r = -ENODEV;
	if (core->f_op->mmap) {
		/* The core checks the range and the flags. */
		shadow.vm_file = core;
		r = core->f_op->mmap(core, &shadow);
	}
	if (!r && (!shadow.vm_ops || !shadow.vm_ops->fault || shadow.vm_ops->open ||
		   shadow.vm_ops->close || shadow.vm_flags != vma->vm_flags)) {
		pr_warn_ratelimited("%s: the core's mapping is not one kvm_thin can forward\n",
				    file_dentry(filp)->d_name.name);
		r = -ENODEV;
	}
	fput(core);	/* after the last look at what the core's mmap set */
	if (r)
		return r;
	WRITE_ONCE(kf->mapping, filp->f_mapping);
	vma->vm_ops = &klu_file_vm_ops;
	return 0;
}

static int klu_file_release(struct inode *inode, struct file *filp)
{
	struct klu_file *kf = filp->private_data;
	struct klu_vm *vm = kf->vm;

	/* A move in progress holds files_lock and finishes first. */
	klu_vm_del_file(vm, kf);
	fput(kf->core);
	if (kf->pending)	/* its page stays in the VMM, which is closing this vCPU */
		fput(kf->pending);
	klu_pending_vm_put(kf);
	klu_journal_free(&kf->journal);
	kfree(kf);
	klu_vm_put(vm);
	return 0;
}

static const struct file_operations klu_file_fops = {
	.owner = THIS_MODULE,
	.release = klu_file_release,
	.unlocked_ioctl = klu_file_ioctl,
#ifdef CONFIG_COMPAT
	.compat_ioctl = klu_file_compat_ioctl,
#endif
	.mmap = klu_file_mmap,
	.llseek = noop_llseek,
};
