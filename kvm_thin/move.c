// SPDX-License-Identifier: GPL-2.0
/*
 * The live move: a running VM goes from the core that runs it to another, while its VMM
 * keeps its fds and mappings and notices nothing but a KVM_EXIT_INTR.
 *
 *   quiesce   every vCPU leaves the core (a task-work kick is a signal without a signal)
 *             and parks in kvm_thin's KVM_RUN; an exit the VMM had not completed is
 *             completed on the old core first.  No call into the old core is under way.
 *   rebuild   the new core creates the VM and its vCPUs, and kvm_thin replays the
 *             journal (journal.c): memory slots, irqchip, routing, irqfds, ioeventfds...
 *   state     vCPU and VM state goes across through KVM's migration uAPI, staged in a
 *             scratch area of the VMM's own memory: CPUID, TSC offset, registers, FPU,
 *             MSRs, LAPIC, events, MP state, debug registers, nested state, irqchip,
 *             PIT, kvmclock.  Guest memory is not copied: both cores map the same.
 *   commit    the VMM's mappings of kvm_run & co. are zapped and their pages copied,
 *             kvm_thin's files switch to the new core's, and the vCPUs resume.
 *
 * Everything up to commit can fail; the VM then resumes on its old core, untouched, and
 * the new core's half-built VM is closed.  The work runs in a kernel thread that uses the
 * VMM's mm, since KVM binds a VM to the mm that creates it.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/ctype.h>
#include <linux/delay.h>
#include <linux/file.h>
#include <linux/kthread.h>
#include <linux/kvm.h>
#include <linux/memcontrol.h>
#include <linux/mman.h>
#include <linux/moduleparam.h>
#include <linux/refcount.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/task_work.h>
#include <linux/uaccess.h>

#include <asm/msr-index.h>

#include "thin.h"

#define CREATE_TRACE_POINTS
#include "trace.h"

/*
 * The test knobs (fail_move_step here, pi_handover_always in pi.c) take a value other
 * than their default only when kvm_thin was loaded with fault_injection=1: a host in
 * production, where nobody asked for them, cannot have its moves broken by a stray write.
 */
bool klu_fault_injection;
module_param_named(fault_injection, klu_fault_injection, bool, 0444);
MODULE_PARM_DESC(fault_injection,
		 "let fail_move_step and pi_handover_always be set (tests; load time only)");

/* @kp's test knob is set to @val, unless it is not its default and fault_injection is off. */
int klu_test_knob_set(const char *val, const struct kernel_param *kp,
		      int (*set)(const char *, const struct kernel_param *), bool is_default)
{
	if (!is_default && !klu_fault_injection) {
		pr_warn("%s: refused: kvm_thin was loaded without fault_injection=1\n",
			kp->name);
		return -EPERM;
	}
	return set(val, kp);
}

static int klu_fail_step_set(const char *val, const struct kernel_param *kp)
{
	unsigned int step;

	if (kstrtouint(val, 0, &step))
		return -EINVAL;
	return klu_test_knob_set(val, kp, param_set_uint, !step);
}

static const struct kernel_param_ops klu_fail_step_ops = {
	.set = klu_fail_step_set,
	.get = param_get_uint,
};

/* Fault injection: make step N of every move fail (0: none).  For the tests. */
unsigned int klu_fail_move_step;
module_param_cb(fail_move_step, &klu_fail_step_ops, &klu_fail_move_step, 0644);
MODULE_PARM_DESC(fail_move_step,
		 "make this step of each live move fail (tests; needs fault_injection=1)");

static unsigned int klu_quiesce_ms = 2000;
module_param_named(quiesce_ms, klu_quiesce_ms, uint, 0644);
MODULE_PARM_DESC(quiesce_ms, "how long a move waits for a VM's vCPUs to stop");

/*
 * A move works in the VMM's memory (scratch, and guest memory that the core's ioctls
 * touch), which the VMM can make wait for ever: a userfaultfd page nobody serves, a FUSE
 * file whose server does not answer.  A trigger waits this long for one VM, then stops
 * its mover with SIGKILL (every such wait is killable, and KVM's own vCPU mutex too), the
 * VM goes back to its old core, and after as long again the trigger goes on without it.
 */
#define KLU_MOVE_TIMEOUT_MAX	55000	/* twice that stays below hung_task's 120 s */
static unsigned int klu_move_timeout_ms = 10000;
module_param_named(move_timeout_ms, klu_move_timeout_ms, uint, 0644);
MODULE_PARM_DESC(move_timeout_ms,
		 "how long a trigger waits for one VM's move before it stops it (quiesce_ms + 1000 to 55000)");

enum klu_step {
	KLU_STEP_CHECK = 1,
	KLU_STEP_QUIESCE,
	KLU_STEP_CREATE_VM,
	KLU_STEP_REPLAY_VM,
	KLU_STEP_CREATE_VCPUS,
	KLU_STEP_VCPU_STATE,
	KLU_STEP_VM_STATE,
	KLU_STEP_COMMIT,
};

/*
 * fail_move_step's points inside a step: commit, after the descriptor handover (9);
 * the same, and then the irqfds fail to go back to the old VM (10).
 */
#define KLU_FAULT_IRQFDS	9
#define KLU_FAULT_IRQFDS_BACK	10

static const char * const klu_step_name[] = {
	[KLU_STEP_CHECK] = "check",
	[KLU_STEP_QUIESCE] = "quiesce",
	[KLU_STEP_CREATE_VM] = "create-vm",
	[KLU_STEP_REPLAY_VM] = "replay-vm",
	[KLU_STEP_CREATE_VCPUS] = "create-vcpus",
	[KLU_STEP_VCPU_STATE] = "vcpu-state",
	[KLU_STEP_VM_STATE] = "vm-state",
	[KLU_STEP_COMMIT] = "commit",
};

/* One move of one VM. */
struct klu_move {
	struct klu_vm *vm;
	struct klu_core *to;
	enum klu_step step;
	char why[96];
	int result;
	struct completion settled;	/* the VM runs again, moved or not */
	struct completion done;		/* and the move's thread is done */
	refcount_t users;		/* the trigger and the move's thread */
	bool stopped;			/* the trigger sent SIGKILL: past move_timeout_ms */
	bool orphaned;			/* the trigger gave up waiting */
	void __user *scratch;
	/* The new core's files, in the order of vm->files. */
	struct file **new;
	unsigned long *pending_buf;	/* per file: scratch for an exit to complete */
	struct klu_dirty_slot **pending_slots;	/* and the slots that log, for it */
	struct klu_dirty_slot *log_slots;	/* the slots that log */
	int nr_log_slots;
	int nr_files;
	struct file *old_vm;		/* the old core's VM file */
	bool irqfds_off;		/* detached from the old VM */
	bool irqfds_new;		/* attached to the new VM */
	bool groups_moved;		/* kvm-vfio's groups, from old to new devices */
	unsigned int bp_kept, bp_fallback;	/* irq bypasses handed over, or not */
	bool bp_keep;			/* hand connected bypasses over */
	bool pi_on;			/* and the vCPUs' posted-interrupt descriptors */
	char bp_why[80];		/* why not, on a host that posts */
	struct klu_pi_move pi;
	struct list_head graves;	/* core files to close once the vCPUs run again */
	u32 *msrs;			/* the MSR indices to move */
	u32 nr_msrs;
	unsigned int xsave_set;		/* the set ioctl of the vCPU's FPU image, staged */
	u64 t0, t_quiet, t_rebuilt, t_state;
};

static DEFINE_MUTEX(klu_move_lock);	/* one trigger at a time */

static void klu_move_put(struct klu_move *mv)
{
	int i;

	if (!refcount_dec_and_test(&mv->users))
		return;
	kfree(mv->pi.old);
	kfree(mv->pi.new);
	kfree(mv->new);
	kfree(mv->pending_buf);
	for (i = 0; mv->pending_slots && i < mv->nr_files; i++)
		kvfree(mv->pending_slots[i]);
	kfree(mv->pending_slots);
	kvfree(mv->log_slots);
	kfree(mv->msrs);
	kfree(mv);
}

static __printf(3, 4) int klu_fail(struct klu_move *mv, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(mv->why, sizeof(mv->why), fmt, ap);
	va_end(ap);
	return err;
}

static int klu_step(struct klu_move *mv, enum klu_step step)
{
	mv->step = step;
	/* Stopped by the trigger (klu_move_wait()): what waited may have lost a write. */
	if (fatal_signal_pending(current))
		return klu_fail(mv, -ETIMEDOUT, "stopped after move_timeout_ms, %s",
				"waiting on the VMM's memory or a call into the core");
	if (klu_fail_move_step == step)
		return klu_fail(mv, -EIO, "fault injected (fail_move_step=%u)", step);
	return 0;
}

static long klu_ioc(struct file *f, unsigned int ioctl, unsigned long arg)
{
	return f->f_op->unlocked_ioctl(f, ioctl, arg);
}

#define KLU_MAX_CPUID	256	/* KVM_MAX_CPUID_ENTRIES */

/* A capability of the new core, as its /dev/kvm tells it (it looks at no file). */
static long klu_cap(struct klu_move *mv, long cap)
{
	return mv->to->fops->unlocked_ioctl(NULL, KVM_CHECK_EXTENSION, cap);
}

static long klu_ioc_ptr(struct file *f, unsigned int ioctl, void __user *arg)
{
	return klu_ioc(f, ioctl, (unsigned long)arg);
}

/* ---- quiesce ------------------------------------------------------------------- */

static void klu_kick_done(struct callback_head *cb)
{
	kfree(cb);
}

/* Make the thread in KVM_RUN on @kf leave the guest, as a signal would. */
void klu_vcpu_kick(struct klu_file *kf)
{
	struct callback_head *cb = kmalloc(sizeof(*cb), GFP_KERNEL);

	if (!cb)
		return;		/* the quiesce times out and the move fails */
	init_task_work(cb, klu_kick_done);
	spin_lock(&kf->run_lock);
	if (!kf->run_task || task_work_add(kf->run_task, cb, TWA_SIGNAL)) {
		spin_unlock(&kf->run_lock);
		kfree(cb);
		return;
	}
	spin_unlock(&kf->run_lock);
}

/* The first vCPU that is in the core, or NULL. */
static struct klu_file *klu_busy_vcpu(struct klu_vm *vm)
{
	struct klu_file *kf;

	lockdep_assert_held(&vm->files_lock);
	list_for_each_entry(kf, &vm->files, node)
		if (kf->kind == KLU_FILE_VCPU && READ_ONCE(kf->run_task))
			return kf;
	return NULL;
}

/*
 * Stop every vCPU of the VM.  On success vm->lock is held for writing and files_lock
 * is held (the order every path takes them in); on failure neither is.
 */
static int klu_quiesce(struct klu_move *mv)
{
	struct klu_vm *vm = mv->vm;
	unsigned long deadline = jiffies + msecs_to_jiffies(klu_quiesce_ms);
	struct klu_file *kf, *busy;
	u32 vcpu = 0;
	int seen;

	WRITE_ONCE(vm->moving, true);
	smp_mb();	/* pairs with klu_vcpu_run(): it sees moving, or we see it running */
	mutex_lock(&vm->files_lock);
	list_for_each_entry(kf, &vm->files, node)
		if (kf->kind == KLU_FILE_VCPU)
			klu_vcpu_kick(kf);
	mutex_unlock(&vm->files_lock);
	for (;;) {
		seen = atomic_read(&vm->stops);
		/* Calls other than KVM_RUN (the VMM's other threads) are short. */
		while (!down_write_trylock(&vm->lock)) {
			if (time_after(jiffies, deadline))
				goto timeout;
			usleep_range(100, 200);
		}
		mutex_lock(&vm->files_lock);
		busy = klu_busy_vcpu(vm);
		if (!busy)
			return 0;
		vcpu = busy->vcpu_id;
		klu_vcpu_kick(busy);
		mutex_unlock(&vm->files_lock);
		up_write(&vm->lock);
		/* vCPU threads count their stops in vm->stops and wake us. */
		if (!wait_event_timeout(vm->wq, atomic_read(&vm->stops) != seen,
					max_t(long, deadline - jiffies, 1)) &&
		    time_after(jiffies, deadline))
			goto timeout;
	}
timeout:
	return klu_fail(mv, -ETIMEDOUT,
			"vCPU %u, or a call into the core, did not end within %u ms", vcpu,
			klu_quiesce_ms);
}

static void klu_resume(struct klu_vm *vm)
{
	WRITE_ONCE(vm->moving, false);
	up_write(&vm->lock);
	wake_up_all(&vm->wq);
}

/* ---- rebuild ------------------------------------------------------------------- */

static int klu_new_file(struct klu_move *mv, int i, long fd)
{
	if (fd < 0)
		return fd;
	mv->new[i] = klu_take_fd(fd);
	return mv->new[i] ? 0 : -EBADF;
}

/*
 * A kvm-vfio device on the new VM, at @i of mv->new (the only device a move makes: any
 * other makes the VM unmovable).  Its VFIO groups come over at commit.
 */
static int klu_new_device(struct klu_move *mv, int i)
{
	struct kvm_create_device __user *ucd = mv->scratch;
	struct kvm_create_device cd = { .type = KVM_DEV_TYPE_VFIO };
	long r;

	if (copy_to_user(ucd, &cd, sizeof(cd)))
		return -EFAULT;
	r = klu_ioc_ptr(mv->new[0], KVM_CREATE_DEVICE, ucd);
	if (!r && get_user(cd.fd, &ucd->fd))
		r = -EFAULT;
	if (!r)
		r = klu_new_file(mv, i, cd.fd);
	if (!r && strcmp(file_dentry(mv->new[i])->d_name.name, "kvm-vfio"))
		r = -EBADF;
	return r ? klu_fail(mv, r, "creating the kvm-vfio device failed") : 0;
}

/*
 * kvm-vfio's VFIO groups go from the old devices to the new ones: deleted from the old
 * (VFIO's kvm pointer cleared, the old VM's assignment count and non-coherent DMA
 * accounting dropped), then added to the new, which points VFIO at the new struct kvm.
 * Before the posted-interrupt descriptors: KVM maintains them only in a VM with an
 * assigned device.  klu_move_discard() undoes it.
 */
static int klu_move_groups_of(struct klu_move *mv, struct klu_file *kf, struct file *dev)
{
	int r;

	r = klu_journal_replay(&kf->journal, kf->core, mv->scratch, KLU_SCRATCH_ARG,
			       KLU_REPLAY_GROUPS_OFF);
	if (r)
		return klu_fail(mv, r, "taking kvm-vfio's groups off the old VM");
	/*
	 * With the groups off, VFIO hands the old struct kvm to no device open any more
	 * (its group_lock orders the two): a vGPU opened before took its reference by
	 * now, and keeps the old VM.
	 */
	if (klu_owner_held(mv->vm->kvm))
		return klu_fail(mv, -EOPNOTSUPP, "kvmgt took the VM's struct kvm");
	r = klu_journal_replay(&kf->journal, dev, mv->scratch, KLU_SCRATCH_ARG,
			       KLU_REPLAY_GROUPS_ON);
	return r ? klu_fail(mv, r, "adding kvm-vfio's groups to the new VM") : 0;
}

static int klu_move_groups(struct klu_move *mv)
{
	struct klu_file *kf;
	int i = 0, r;

	list_for_each_entry(kf, &mv->vm->files, node) {
		if (kf->kind == KLU_FILE_DEVICE && !list_empty(&kf->journal)) {
			mv->groups_moved = true;
			r = klu_move_groups_of(mv, kf, mv->new[i]);
			if (r)
				return r;
		}
		i++;
	}
	return 0;
}

static int klu_rebuild(struct klu_move *mv)
{
	struct klu_vm *vm = mv->vm;
	struct klu_file *kf;
	int i = 0, r;

	r = klu_step(mv, KLU_STEP_CREATE_VM);
	if (r)
		return r;
	/* kvm_dev_ioctl() does not look at its file for KVM_CREATE_VM. */
	r = klu_new_file(mv, 0, mv->to->fops->unlocked_ioctl(NULL, KVM_CREATE_VM, vm->type));
	if (r)
		return klu_fail(mv, r, "core %s: KVM_CREATE_VM(%lu) failed", mv->to->tag,
				vm->type);
	/*
	 * The new struct kvm is known to kvm_thin's exports from now on: kvm-vfio points
	 * VFIO at it in the commit, and a vGPU opened then calls kvm_get_kvm() on it.
	 */
	klu_owner_set(mv->new[0]->private_data, mv->to, vm);
	r = klu_step(mv, KLU_STEP_REPLAY_VM);
	if (r)
		return r;
	r = klu_journal_replay(&vm->journal, mv->new[0], mv->scratch, KLU_SCRATCH_ARG,
			       KLU_REPLAY_CONFIG);
	if (!r)
		r = klu_dirty_rebuilt(vm, mv->new[0], mv->scratch);
	if (r)
		return klu_fail(mv, r, "replaying the VM's configuration failed");
	r = klu_step(mv, KLU_STEP_CREATE_VCPUS);
	if (r)
		return r;
	list_for_each_entry(kf, &vm->files, node) {
		if (kf->kind == KLU_FILE_DEVICE) {
			r = klu_new_device(mv, i++);
			if (r)
				return r;
			continue;
		}
		if (kf->kind != KLU_FILE_VCPU) {
			i++;
			continue;
		}
		r = klu_new_file(mv, i++, klu_ioc(mv->new[0], KVM_CREATE_VCPU, kf->vcpu_id));
		if (r)
			return klu_fail(mv, r, "KVM_CREATE_VCPU(%u) failed", kf->vcpu_id);
		r = klu_journal_replay(&kf->journal, mv->new[i - 1], mv->scratch,
				       KLU_SCRATCH_ARG, KLU_REPLAY_CONFIG);
		if (r)
			return klu_fail(mv, r, "replaying vCPU %u's configuration failed",
					kf->vcpu_id);
	}
	return 0;
}

/* ---- state --------------------------------------------------------------------- */

/* GET with @get on @from into @buf, then SET with @set on @to from it. */
static int klu_xfer_at(struct klu_move *mv, struct file *from, struct file *to,
		       unsigned int get, unsigned int set, const char *what, void __user *buf)
{
	long r = klu_ioc_ptr(from, get, buf);

	if (r >= 0)
		r = klu_ioc_ptr(to, set, buf);
	return r < 0 ? klu_fail(mv, r, "%s: %ld", what, r) : 0;
}

/* The same through scratch. */
static int klu_xfer(struct klu_move *mv, struct file *from, struct file *to,
		    unsigned int get, unsigned int set, const char *what)
{
	return klu_xfer_at(mv, from, to, get, set, what, mv->scratch);
}

static int klu_xfer_cpuid(struct klu_move *mv, struct file *from, struct file *to)
{
	struct kvm_cpuid2 __user *c = mv->scratch;
	u32 nent;
	long r;

	if (put_user(KLU_MAX_CPUID, &c->nent))
		return -EFAULT;
	r = klu_ioc_ptr(from, KVM_GET_CPUID2, c);
	if (r < 0)
		return klu_fail(mv, r, "KVM_GET_CPUID2: %ld", r);
	if (get_user(nent, &c->nent))
		return -EFAULT;
	if (!nent)	/* the VMM never set CPUID: nor do we */
		return 0;
	r = klu_ioc_ptr(to, KVM_SET_CPUID2, c);
	return r < 0 ? klu_fail(mv, r, "KVM_SET_CPUID2: %ld", r) : 0;
}

/* The guest's TSC keeps its offset from the host's: no jump, however long the move. */
static int klu_xfer_tsc(struct klu_move *mv, struct file *from, struct file *to)
{
	struct kvm_device_attr attr = {
		.group = KVM_VCPU_TSC_CTRL,
		.attr = KVM_VCPU_TSC_OFFSET,
		.addr = (u64)(unsigned long)(mv->scratch + 64),
	};
	long khz_from, khz_to, r;

	khz_from = klu_ioc(from, KVM_GET_TSC_KHZ, 0);
	khz_to = klu_ioc(to, KVM_GET_TSC_KHZ, 0);
	if (khz_from > 0 && khz_from != khz_to) {
		r = klu_ioc(to, KVM_SET_TSC_KHZ, khz_from);
		if (r < 0)
			return klu_fail(mv, r, "KVM_SET_TSC_KHZ(%ld): %ld", khz_from, r);
	}
	if (copy_to_user(mv->scratch, &attr, sizeof(attr)))
		return -EFAULT;
	return klu_xfer(mv, from, to, KVM_GET_DEVICE_ATTR, KVM_SET_DEVICE_ATTR,
			"TSC offset");
}

/*
 * The FPU image is staged past the argument area of scratch (KLU_XSAVE_AREA), where it
 * stays for the rest of the vCPU's transfer: see klu_xfer_mp_state().
 */
#define KLU_XSAVE_AREA(mv)	((mv)->scratch + KLU_SCRATCH_ARG)
#define KLU_XSAVE_MAX		(KLU_SCRATCH_SIZE - KLU_SCRATCH_ARG)

/* XSAVE as large as this host's (KVM_CAP_XSAVE2), else the legacy FPU state. */
static int klu_xfer_xsave(struct klu_move *mv, struct file *from, struct file *to)
{
	long size = klu_cap(mv, KVM_CAP_XSAVE2);
	unsigned int get = KVM_GET_FPU, set = KVM_SET_FPU;
	int r;

	mv->xsave_set = 0;
	if (size > KLU_XSAVE_MAX)
		return klu_fail(mv, -E2BIG, "XSAVE state of %ld bytes", size);
	if (size > 0) {
		get = KVM_GET_XSAVE2;
		set = KVM_SET_XSAVE;
	} else if (klu_cap(mv, KVM_CAP_XSAVE) > 0) {
		get = KVM_GET_XSAVE;
		set = KVM_SET_XSAVE;
	}
	r = klu_xfer_at(mv, from, to, get, set, "FPU/XSAVE", KLU_XSAVE_AREA(mv));
	if (!r)
		mv->xsave_set = set;
	return r;
}

/*
 * The MP state.  On a host whose KVM supports MPX, KVM_GET_MP_STATE loads the guest's
 * FPU into the calling thread and saves it back, and this thread is a kernel thread,
 * whose FPU registers the kernel does not save when an interrupt uses the FPU
 * (kernel_fpu_begin() skips PF_KTHREAD): the interrupt's values would land in the old
 * vCPU's FPU state.  The new vCPU has its image already; the old one gets it back, in
 * case the move fails and the old vCPU runs on.  Unless the call processed an INIT,
 * which changes the FPU state (MPX) on purpose, and which the new vCPU repeats: the
 * events carried it as a latched INIT.
 */
static int klu_xfer_mp_state(struct klu_move *mv, struct file *from, struct file *to)
{
	struct kvm_mp_state __user *ump = mv->scratch;
	u32 state;
	long r;

	r = klu_xfer(mv, from, to, KVM_GET_MP_STATE, KVM_SET_MP_STATE, "MP state");
	if (r || !mv->xsave_set)
		return r;
	if (get_user(state, &ump->mp_state))
		return -EFAULT;
	if (state == KVM_MP_STATE_INIT_RECEIVED)
		return 0;
	r = klu_ioc_ptr(from, mv->xsave_set, KLU_XSAVE_AREA(mv));
	return r < 0 ? klu_fail(mv, r, "putting back the old vCPU's FPU state: %ld", r) : 0;
}

/* The MSR indices the old core lists for save/restore, and its feature MSRs, but the TSC. */
static int klu_msr_list(struct klu_move *mv, struct klu_core *core)
{
	static const unsigned int lists[] = {
		KVM_GET_MSR_INDEX_LIST, KVM_GET_MSR_FEATURE_INDEX_LIST,
	};
	const u32 room = (KLU_SCRATCH_ARG - sizeof(struct kvm_msr_list)) / sizeof(u32);
	struct kvm_msr_list __user *ul = mv->scratch;
	u32 *grown, nr, base, i, j;
	long r;

	for (i = 0; i < ARRAY_SIZE(lists); i++) {
		if (put_user(room, &ul->nmsrs))
			return -EFAULT;
		/* kvm_dev_ioctl() does not look at its file for these. */
		r = core->fops->unlocked_ioctl(NULL, lists[i], (unsigned long)ul);
		if (r < 0)
			return klu_fail(mv, r, "MSR list 0x%x of core %s: %ld", lists[i],
					core->tag, r);
		/*
		 * Scratch is the VMM's memory: what the core wrote there may have been
		 * rewritten since.  KVM fails with E2BIG past the room it was given.
		 */
		if (get_user(nr, &ul->nmsrs))
			return -EFAULT;
		if (nr > room)
			return klu_fail(mv, -EINVAL, "MSR list 0x%x: %u entries read back, %s %u",
					lists[i], nr, "more than the room given,", room);
		grown = krealloc_array(mv->msrs, mv->nr_msrs + nr, sizeof(u32), GFP_KERNEL);
		if (!grown)
			return -ENOMEM;
		mv->msrs = grown;
		if (copy_from_user(grown + mv->nr_msrs, ul->indices, nr * sizeof(u32)))
			return -EFAULT;
		base = mv->nr_msrs;
		for (j = 0; j < nr; j++)
			if (grown[base + j] != MSR_IA32_TSC)
				grown[mv->nr_msrs++] = grown[base + j];
	}
	return 0;
}

/* Stage a struct kvm_msrs of @n entries (indices from @index, or entries @e) in scratch. */
static int klu_stage_msrs(struct klu_move *mv, const u32 *index,
			  const struct kvm_msr_entry *e, u32 n)
{
	struct kvm_msrs __user *um = mv->scratch;
	struct kvm_msr_entry x = {};
	u32 i;

	if (put_user(n, &um->nmsrs))
		return -EFAULT;
	if (e)
		return copy_to_user(um->entries, e, n * sizeof(*e)) ? -EFAULT : 0;
	for (i = 0; i < n; i++) {
		x.index = index[i];
		if (copy_to_user(&um->entries[i], &x, sizeof(x)))
			return -EFAULT;
	}
	return 0;
}

/*
 * Every listed MSR the vCPU can read (one not in its CPUID is skipped, as KVM_GET_MSRS
 * stops there) goes to the new vCPU.  One the new core refuses is fine if the new vCPU
 * already holds that value (KVM's default); otherwise the move fails rather than lose it.
 */
static int klu_xfer_msrs(struct klu_move *mv, struct file *from, struct file *to)
{
	struct kvm_msrs __user *um = mv->scratch;
	struct kvm_msr_entry *vals, now;
	u32 done = 0, got = 0;
	long r = 0;

	vals = kvmalloc_array(mv->nr_msrs ?: 1, sizeof(*vals), GFP_KERNEL);
	if (!vals)
		return -ENOMEM;
	while (done < mv->nr_msrs) {
		r = klu_stage_msrs(mv, mv->msrs + done, NULL, mv->nr_msrs - done);
		if (!r)
			r = klu_ioc_ptr(from, KVM_GET_MSRS, um);
		if (r < 0) {
			r = klu_fail(mv, r, "KVM_GET_MSRS: %ld", r);
			goto out;
		}
		if (copy_from_user(vals + got, um->entries, r * sizeof(*vals))) {
			r = -EFAULT;
			goto out;
		}
		got += r;
		done += r + 1;		/* past the one it could not read */
	}
	for (done = 0; done < got; done += r + 1) {
		r = klu_stage_msrs(mv, NULL, vals + done, got - done);
		if (!r)
			r = klu_ioc_ptr(to, KVM_SET_MSRS, um);
		if (r < 0) {
			r = klu_fail(mv, r, "KVM_SET_MSRS: %ld", r);
			goto out;
		}
		if (done + r >= got)
			break;
		/* Refused: does the new vCPU hold the value anyway? */
		now = (struct kvm_msr_entry){ .index = vals[done + r].index };
		if (klu_stage_msrs(mv, NULL, &now, 1) || klu_ioc_ptr(to, KVM_GET_MSRS, um) != 1 ||
		    copy_from_user(&now, um->entries, sizeof(now)) ||
		    now.data != vals[done + r].data) {
			r = klu_fail(mv, -EINVAL,
				     "the new core refused MSR 0x%x = 0x%llx (it holds 0x%llx)",
				     vals[done + r].index, vals[done + r].data, now.data);
			goto out;
		}
	}
	r = 0;
out:
	kvfree(vals);
	return r;
}

/* A vCPU that is in guest mode of a nested guest, or has VMXON done, brings that along. */
static int klu_xfer_nested(struct klu_move *mv, struct file *from, struct file *to)
{
	struct kvm_nested_state __user *un = mv->scratch;
	struct kvm_nested_state hdr;
	long size = klu_cap(mv, KVM_CAP_NESTED_STATE);
	long r;

	if (size <= 0)
		return 0;
	if (size > KLU_SCRATCH_ARG)
		return klu_fail(mv, -E2BIG, "nested state of %ld bytes", size);
	if (put_user((u32)size, &un->size))
		return -EFAULT;
	r = klu_ioc_ptr(from, KVM_GET_NESTED_STATE, un);
	if (r < 0)
		return klu_fail(mv, r, "KVM_GET_NESTED_STATE: %ld", r);
	if (copy_from_user(&hdr, un, sizeof(hdr)))
		return -EFAULT;
	if (!hdr.flags && (hdr.format != KVM_STATE_NESTED_FORMAT_VMX ||
			   hdr.hdr.vmx.vmxon_pa == -1ull))
		return 0;	/* not using nested virtualisation */
	r = klu_ioc_ptr(to, KVM_SET_NESTED_STATE, un);
	return r < 0 ? klu_fail(mv, r, "KVM_SET_NESTED_STATE: %ld", r) : 0;
}

/* Like klu_xfer(), for state the VM may not have: @absent from GET means "none". */
static int klu_xfer_opt(struct klu_move *mv, struct file *from, struct file *to,
			unsigned int get, unsigned int set, int absent, const char *what)
{
	long r = klu_ioc_ptr(from, get, mv->scratch);

	if (r == absent)
		return 0;
	if (r >= 0)
		r = klu_ioc_ptr(to, set, mv->scratch);
	return r < 0 ? klu_fail(mv, r, "%s: %ld", what, r) : 0;
}

/* The general registers, the FPU/XSAVE state and the XCRs. */
static int klu_xfer_regs(struct klu_move *mv, struct file *from, struct file *to)
{
	int r = klu_xfer(mv, from, to, KVM_GET_REGS, KVM_SET_REGS, "registers");

	if (!r)
		r = klu_xfer_xsave(mv, from, to);
	if (!r && klu_cap(mv, KVM_CAP_XCRS) > 0)
		r = klu_xfer(mv, from, to, KVM_GET_XCRS, KVM_SET_XCRS, "XCRs");
	return r;
}

/*
 * One vCPU, in the order QEMU's migration uses where it matters: CPUID before anything
 * that depends on it, the TSC before the TSC deadline, SREGS (EFER, APIC base) before
 * nested state and the LAPIC, and the LAPIC (timer mode) before the MSRs (TSC deadline).
 */
static int klu_xfer_vcpu(struct klu_move *mv, struct file *from, struct file *to)
{
	int r;

	r = klu_xfer_cpuid(mv, from, to);
	if (!r)
		r = klu_xfer_tsc(mv, from, to);
	if (!r)
		r = klu_xfer(mv, from, to, KVM_GET_SREGS, KVM_SET_SREGS, "special registers");
	if (!r)
		r = klu_xfer_nested(mv, from, to);
	if (!r)
		r = klu_xfer_regs(mv, from, to);
	if (!r)	/* no LAPIC in the kernel: -EINVAL */
		r = klu_xfer_opt(mv, from, to, KVM_GET_LAPIC, KVM_SET_LAPIC, -EINVAL, "LAPIC");
	if (!r)
		r = klu_xfer_msrs(mv, from, to);
	if (!r)
		r = klu_xfer(mv, from, to, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, "events");
	if (!r)
		r = klu_xfer_mp_state(mv, from, to);
	if (!r)
		r = klu_xfer(mv, from, to, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS,
			     "debug registers");
	return r;
}

/*
 * The events of a vCPU whose exit was completed after the move, but for what may have
 * reached the new vCPU since (an NMI, a SIPI) and SMM, which an exit does not change.
 */
static int klu_xfer_exit_events(struct klu_move *mv, struct file *from, struct file *to)
{
	struct kvm_vcpu_events __user *ue = mv->scratch;
	u32 flags;
	long r;

	r = klu_ioc_ptr(from, KVM_GET_VCPU_EVENTS, ue);
	if (r >= 0 && get_user(flags, &ue->flags))
		r = -EFAULT;
	flags &= ~(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
		   KVM_VCPUEVENT_VALID_SMM);
	if (r >= 0 && put_user(flags, &ue->flags))
		r = -EFAULT;
	if (r >= 0)
		r = klu_ioc_ptr(to, KVM_SET_VCPU_EVENTS, ue);
	return r < 0 ? klu_fail(mv, r, "events: %ld", r) : 0;
}

/*
 * A vCPU whose exit was completed by the old core after the move: what completing an
 * exit can change, and what the VMM set on the old vCPU meanwhile (files.c's
 * klu_exit_state(): registers, FPU/SSE for an MMIO read, an exception, nested state),
 * staged in @scratch (KLU_SCRATCH_SIZE bytes of the VMM's memory).  Not the LAPIC, the
 * MP state or the TSC deadline: the new vCPU has those since the move, and may have
 * received an interrupt or a timer tick since.
 */
int klu_move_vcpu_state(struct klu_vm *vm, struct file *from, struct file *to,
			void __user *scratch)
{
	struct klu_move mv = { .vm = vm, .to = vm->core, .scratch = scratch };
	u32 i, n = 0;
	int r = klu_msr_list(&mv, vm->core);

	for (i = 0; !r && i < mv.nr_msrs; i++)
		if (mv.msrs[i] != MSR_IA32_TSC_DEADLINE)
			mv.msrs[n++] = mv.msrs[i];
	mv.nr_msrs = n;
	if (!r)
		r = klu_xfer(&mv, from, to, KVM_GET_SREGS, KVM_SET_SREGS, "special registers");
	if (!r)
		r = klu_xfer_nested(&mv, from, to);
	if (!r)
		r = klu_xfer_regs(&mv, from, to);
	if (!r)
		r = klu_xfer_msrs(&mv, from, to);
	if (!r)
		r = klu_xfer_exit_events(&mv, from, to);
	if (r)
		pr_err("VM %lu: moving a vCPU's state after its exit failed: %s (%d)\n", vm->id,
		       mv.why[0] ? mv.why : "error", r);
	kfree(mv.msrs);
	return r;
}

/* The in-kernel PIC and IOAPIC, the PIT, and kvmclock, which keeps counting. */
static int klu_xfer_vm(struct klu_move *mv, struct file *from, struct file *to)
{
	struct kvm_irqchip __user *chip = mv->scratch;
	struct kvm_clock_data clock;
	u32 id;
	int r = 0;

	for (id = KVM_IRQCHIP_PIC_MASTER; !r && id <= KVM_IRQCHIP_IOAPIC; id++) {
		if (put_user(id, &chip->chip_id))
			return -EFAULT;
		/* no in-kernel irqchip, or a split one: -ENXIO */
		r = klu_xfer_opt(mv, from, to, KVM_GET_IRQCHIP, KVM_SET_IRQCHIP, -ENXIO,
				 "irqchip");
	}
	if (!r)
		r = klu_xfer_opt(mv, from, to, KVM_GET_PIT2, KVM_SET_PIT2, -ENXIO, "PIT");
	if (r)
		return r;
	r = klu_ioc_ptr(from, KVM_GET_CLOCK, mv->scratch);
	if (r < 0)
		return klu_fail(mv, r, "KVM_GET_CLOCK: %d", r);
	if (copy_from_user(&clock, mv->scratch, sizeof(clock)))
		return -EFAULT;
	/* With the host's real time, the new clock adds what passed since the read. */
	clock.flags &= KVM_CLOCK_REALTIME;
	if (copy_to_user(mv->scratch, &clock, sizeof(clock)))
		return -EFAULT;
	r = klu_ioc_ptr(to, KVM_SET_CLOCK, mv->scratch);
	return r < 0 ? klu_fail(mv, r, "KVM_SET_CLOCK: %d", r) : 0;
}

static int klu_xfer_state(struct klu_move *mv)
{
	struct klu_file *kf;
	int i = 0, r;

	r = klu_step(mv, KLU_STEP_VCPU_STATE);
	list_for_each_entry(kf, &mv->vm->files, node) {
		if (!r && kf->kind == KLU_FILE_VCPU) {
			r = klu_xfer_vcpu(mv, kf->core, mv->new[i]);
			if (r && !mv->why[0])
				klu_fail(mv, r, "vCPU %u", kf->vcpu_id);
		}
		i++;
	}
	if (!r)
		r = klu_step(mv, KLU_STEP_VM_STATE);
	if (!r)
		r = klu_xfer_vm(mv, mv->old_vm, mv->new[0]);
	return r;
}

/* ---- commit -------------------------------------------------------------------- */

/*
 * The pages the VMM maps (kvm_run, the PIO data page, the coalesced MMIO ring), then
 * the switch.  The VMM's mappings are zapped first: a VMM thread touching them now waits
 * in klu_file_fault() and then sees the new core's pages.
 */
static int klu_commit(struct klu_move *mv)
{
	struct klu_vm *vm = mv->vm;
	struct klu_file *kf;
	bool ring = false;
	int i = 0, logs, r;

	r = klu_step(mv, KLU_STEP_COMMIT);
	if (r)
		return r;
	list_for_each_entry(kf, &vm->files, node) {
		struct address_space *mapping = READ_ONCE(kf->mapping);

		if (mapping)
			unmap_mapping_range(mapping, 0, 0, 1);
	}
	list_for_each_entry(kf, &vm->files, node) {
		if (kf->kind == KLU_FILE_VCPU) {
			r = klu_copy_page(kf->core, mv->new[i], 0);
			if (!r)
				r = klu_copy_page(kf->core, mv->new[i], KVM_PIO_PAGE_OFFSET);
			if (!r && !ring) {
				r = klu_copy_page(kf->core, mv->new[i],
						  KVM_COALESCED_MMIO_PAGE_OFFSET);
				ring = true;
			}
			if (r)
				return klu_fail(mv, r, "copying vCPU %u's shared pages",
						kf->vcpu_id);
		}
		i++;
	}
	/* An exit the VMM has not completed yet is completed by the old vCPU (files.c). */
	i = 0;
	list_for_each_entry(kf, &vm->files, node) {
		if (kf->kind == KLU_FILE_VCPU && READ_ONCE(kf->exit_pending) && !kf->pending) {
			unsigned long buf = vm_mmap(NULL, 0, KLU_SCRATCH_SIZE,
						    PROT_READ | PROT_WRITE,
						    MAP_PRIVATE | MAP_ANONYMOUS, 0);

			if (IS_ERR_VALUE(buf))
				return klu_fail(mv, (long)buf, "no memory for vCPU %u's exit",
						kf->vcpu_id);
			mv->pending_buf[i] = buf;
		}
		i++;
	}
	/*
	 * The dirty bits of the old core, once nothing runs on it any more but the exits
	 * left to complete (which read them again).  A failure after this still has them:
	 * kvm_thin carries them for whichever core the VM runs on.
	 */
	logs = klu_dirty_move(vm, mv->old_vm, mv->scratch, KLU_SCRATCH_SIZE, &mv->log_slots);
	if (logs < 0)
		return klu_fail(mv, logs, "reading the old core's dirty log");
	mv->nr_log_slots = logs;
	i = 0;
	list_for_each_entry(kf, &vm->files, node) {
		if (mv->pending_buf[i] && logs) {
			mv->pending_slots[i] = kvmalloc_array(logs, sizeof(*mv->log_slots),
							      GFP_KERNEL_ACCOUNT);
			if (!mv->pending_slots[i])
				return klu_fail(mv, -ENOMEM, "no memory for vCPU %u's exit",
						kf->vcpu_id);
			memcpy(mv->pending_slots[i], mv->log_slots,
			       logs * sizeof(*mv->log_slots));
		}
		i++;
	}
	r = klu_move_groups(mv);
	if (r)
		return r;
	/*
	 * The posted-interrupt descriptors, after every state ioctl (KVM_SET_LAPIC clears
	 * the new vCPU's): what the IOMMU posted since the old vCPU's KVM_GET_LAPIC stays
	 * pending in them, and the new vCPUs take it in on their first entry.
	 */
	if (mv->pi_on) {
		unsigned int n = 0;

		i = 0;
		list_for_each_entry(kf, &vm->files, node) {
			if (kf->kind == KLU_FILE_VCPU)
				mv->pi.new[n++] = mv->new[i];
			i++;
		}
		mv->pi.new_vm = mv->new[0];
		r = klu_pi_hand_over(&mv->pi);
		if (r)
			return klu_fail(mv, r, "no memory for posted-interrupt descriptors");
	}
	/*
	 * The irqfds last: from here on an eventfd signal goes to the new VM, whose vCPUs
	 * and irqchip have their state; one that came while they were detached is still
	 * counted in its eventfd, and KVM injects it when the irqfd is attached.
	 */
	if (klu_fail_move_step == KLU_FAULT_IRQFDS ||
	    klu_fail_move_step == KLU_FAULT_IRQFDS_BACK)
		return klu_fail(mv, -EIO, "fault injected (fail_move_step=%u)",
				klu_fail_move_step);
	mv->irqfds_new = true;
	r = klu_journal_replay(&vm->journal, mv->new[0], mv->scratch, KLU_SCRATCH_ARG,
			       KLU_REPLAY_IRQFDS_ON);
	if (r)
		return klu_fail(mv, r, "attaching the irqfds to the new VM");
	/* Past this point nothing fails: the old core's files are closed after the resume. */
	i = 0;
	list_for_each_entry(kf, &vm->files, node) {
		if (mv->pending_buf[i]) {
			kf->pending = kf->core;
			kf->pending_buf = (void __user *)mv->pending_buf[i];
			/* Its completion may write guest memory: the old VM logs that. */
			kf->pending_vm = get_file(mv->old_vm);
			kf->pending_slots = mv->pending_slots[i];
			kf->pending_nslots = mv->pending_slots[i] ? mv->nr_log_slots : 0;
			mv->pending_slots[i] = NULL;
			mv->pending_buf[i] = 0;
		} else {
			struct klu_grave *g = kzalloc(sizeof(*g), GFP_KERNEL | __GFP_NOFAIL);

			g->file = kf->core;
			list_add_tail(&g->node, &mv->graves);
		}
		spin_lock(&kf->run_lock);	/* against klu_file_mmap() */
		kf->core = mv->new[i];
		spin_unlock(&kf->run_lock);
		mv->new[i++] = NULL;
	}
	/*
	 * The new VM file (the first) holds the new core's struct kvm, known to the exports
	 * since the rebuild.  The old one's entry goes, unless a KVM device could have
	 * handed it out (vms.c keeps those too).
	 */
	if (!vm->has_device)
		klu_owner_del(vm->kvm, vm);
	vm->kvm = list_first_entry(&vm->files, struct klu_file, node)->core->private_data;
	klu_owner_set(vm->kvm, mv->to, vm);
	WRITE_ONCE(vm->core, mv->to);
	klu_stats_moved(vm, mv->scratch, KLU_SCRATCH_SIZE, &mv->graves);
	return 0;
}

/* ---- one VM -------------------------------------------------------------------- */

/* Can the VM move?  Under files_lock; the VM can change until it is quiesced. */
static int klu_move_check(struct klu_move *mv)
{
	struct klu_vm *vm = mv->vm;
	struct klu_file *kf;

	lockdep_assert_held(&vm->files_lock);
	if (vm->unmovable[0])
		return klu_fail(mv, -EOPNOTSUPP, "the VM is not movable: %s", vm->unmovable);
	if (vm->has_device && klu_owner_held(vm->kvm))
		return klu_fail(mv, -EOPNOTSUPP,
				"a module outside KVM (kvmgt) holds the VM's struct kvm, which a move replaces");
	kf = list_first_entry_or_null(&vm->files, struct klu_file, node);
	if (!kf || kf->kind != KLU_FILE_VM)
		return klu_fail(mv, -ENOENT, "the VMM closed the VM file");
	return 0;
}

/* With the VM quiesced: check again, and size the move by the VM's files now. */
static int klu_move_prepare(struct klu_move *mv)
{
	struct klu_vm *vm = mv->vm;
	struct klu_file *kf;
	int r = klu_move_check(mv);

	if (r)
		return r;
	mv->old_vm = list_first_entry(&vm->files, struct klu_file, node)->core;
	list_for_each_entry(kf, &vm->files, node)
		mv->nr_files++;
	mv->new = kcalloc(mv->nr_files, sizeof(*mv->new), GFP_KERNEL);
	mv->pending_buf = kcalloc(mv->nr_files, sizeof(*mv->pending_buf), GFP_KERNEL);
	mv->pending_slots = kcalloc(mv->nr_files, sizeof(*mv->pending_slots), GFP_KERNEL);
	mv->pi.old = kcalloc(mv->nr_files, sizeof(*mv->pi.old), GFP_KERNEL);
	mv->pi.new = kcalloc(mv->nr_files, sizeof(*mv->pi.new), GFP_KERNEL);
	if (!mv->new || !mv->pending_buf || !mv->pending_slots || !mv->pi.old || !mv->pi.new)
		return -ENOMEM;
	list_for_each_entry(kf, &vm->files, node) {
		if (kf->kind == KLU_FILE_VCPU)
			mv->pi.old[mv->pi.n++] = kf->core;
	}
	mv->pi.old_vm = mv->old_vm;
	mv->pi.from = vm->core;
	mv->pi.to = mv->to;
	return 0;
}

/*
 * With the vCPUs stopped, take the irqfds off the old VM before its state is read: KVM
 * injects what was signalled until then, and a signal that comes later stays counted in
 * its eventfd until the irqfd is attached again, to the new VM or (on failure) the old.
 */
static int klu_detach_irqfds(struct klu_move *mv)
{
	bool pi_ok = false;
	unsigned int armed;
	int r;

	/*
	 * A connected irq bypass is saved rather than disconnected (bypass.c).  Where the
	 * IOMMU posts, only if the posted-interrupt descriptors can be handed over too.
	 */
	if (klu_pi_wanted())
		pi_ok = klu_pi_possible(&mv->pi, mv->bp_why, sizeof(mv->bp_why));
	mv->bp_keep = !klu_bypass_posting() || pi_ok;
	mv->bp_fallback = klu_bypass_arm(mv->vm, mv->old_vm->private_data, true, mv->bp_keep,
					 &armed);
	mv->pi_on = pi_ok && armed;
	mv->irqfds_off = true;
	r = klu_journal_replay(&mv->vm->journal, mv->old_vm, mv->scratch, KLU_SCRATCH_ARG,
			       KLU_REPLAY_IRQFDS_OFF);
	return r ? klu_fail(mv, r, "detaching the irqfds from the old VM") : 0;
}

/* A failed move gives the VFIO groups back to the old kvm-vfio devices. */
static void klu_groups_back(struct klu_move *mv)
{
	struct klu_file *kf;
	int i = 0;

	list_for_each_entry(kf, &mv->vm->files, node) {
		if (kf->kind == KLU_FILE_DEVICE && !list_empty(&kf->journal)) {
			if (mv->new[i])
				klu_journal_replay(&kf->journal, mv->new[i], mv->scratch,
						   KLU_SCRATCH_ARG, KLU_REPLAY_GROUPS_OFF);
			if (klu_journal_replay(&kf->journal, kf->core, mv->scratch,
					       KLU_SCRATCH_ARG, KLU_REPLAY_GROUPS_ON))
				pr_err("VM %lu (pid %d): giving its VFIO groups back to the old kvm-vfio device failed: VFIO's kvm pointer may be unset\n",
				       mv->vm->id, mv->vm->pid);
		}
		i++;
	}
}

/*
 * A move the trigger stopped (SIGKILL) failed in a wait on the VMM's memory.  Its undoing
 * needs that memory too: the signal is taken back, and scratch is mapped afresh, so that
 * only a VMM that makes the new scratch wait as well keeps its VM from going back.
 */
static void klu_scratch_renew(struct klu_move *mv)
{
	unsigned long uaddr;

	if (!fatal_signal_pending(current))
		return;
	flush_signals(current);
	uaddr = vm_mmap(NULL, 0, KLU_SCRATCH_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, 0);
	if (IS_ERR_VALUE(uaddr))
		return;
	vm_munmap((unsigned long)mv->scratch, KLU_SCRATCH_SIZE);
	mv->scratch = (void __user *)uaddr;
}

/*
 * A failed move: the irqfds go back to the old VM (a signal that came meanwhile waits in
 * its eventfd and is injected there), and what the new core built is closed by the
 * mover once the vCPUs run again, like the old core's files after a move.
 */
static void klu_move_discard(struct klu_move *mv)
{
	struct klu_grave *g;
	unsigned int armed;
	int i, r;

	/*
	 * The reverse of the commit: the old vCPUs take their posted-interrupt
	 * descriptors back first, the irqfds leave the new VM, then the VFIO groups go
	 * back to the old (the new VM must still count its assigned device while its
	 * irqfds leave it), then the irqfds are attached to the old VM.
	 */
	klu_pi_hand_back(&mv->pi);
	if (mv->irqfds_new) {
		klu_bypass_arm(mv->vm, mv->new[0]->private_data, false, mv->bp_keep, &armed);
		klu_journal_replay(&mv->vm->journal, mv->new[0], mv->scratch, KLU_SCRATCH_ARG,
				   KLU_REPLAY_IRQFDS_OFF);
	}
	if (mv->groups_moved)
		klu_groups_back(mv);
	if (mv->new && mv->new[0] && !mv->vm->has_device)
		klu_owner_del(mv->new[0]->private_data, mv->vm);
	if (mv->irqfds_off) {
		if (klu_fail_move_step == KLU_FAULT_IRQFDS_BACK)
			r = -EIO;
		else
			r = klu_journal_replay(&mv->vm->journal, mv->old_vm, mv->scratch,
					       KLU_SCRATCH_ARG, KLU_REPLAY_IRQFDS_ON);
		if (r)
			klu_vm_refuse(mv->vm, true, "its irqfds did not go back to the old VM (%d)",
				      r);
	}

	for (i = mv->nr_files - 1; i >= 0; i--) {
		if (mv->pending_buf && mv->pending_buf[i])
			vm_munmap(mv->pending_buf[i], KLU_SCRATCH_SIZE);
		if (!mv->new || !mv->new[i])
			continue;
		g = kzalloc(sizeof(*g), GFP_KERNEL | __GFP_NOFAIL);
		g->file = mv->new[i];
		list_add_tail(&g->node, &mv->graves);
	}
}

/*
 * The move's record, for sysfs.  Under record_lock only: a move that failed before its
 * quiesce must not wait for vm->lock, which vCPUs in KVM_RUN hold for as long as their
 * guest runs, and readers of sysfs must not delay a quiesce.
 */
static void klu_move_record(struct klu_move *mv, const char *from, u64 t_end)
{
	struct klu_vm *vm = mv->vm;

	spin_lock(&vm->record_lock);
	if (!mv->result)
		strscpy(vm->core_tag, mv->to->tag, sizeof(vm->core_tag));
	vm->move_result = mv->result;
	strscpy(vm->move_step, klu_step_name[mv->step] ?: "start", sizeof(vm->move_step));
	strscpy(vm->move_from, from, sizeof(vm->move_from));
	strscpy(vm->move_to, mv->to->tag, sizeof(vm->move_to));
	vm->blackout_ns = mv->t0 ? t_end - mv->t0 : 0;
	vm->quiesce_ns = mv->t_quiet ? mv->t_quiet - mv->t0 : 0;
	vm->rebuild_ns = mv->t_rebuilt ? mv->t_rebuilt - mv->t_quiet : 0;
	vm->state_ns = mv->t_state ? mv->t_state - mv->t_rebuilt : 0;
	vm->commit_ns = mv->t_state ? t_end - mv->t_state : 0;
	vm->bypass_kept = mv->bp_kept;
	vm->bypass_fallback = mv->bp_fallback;
	vm->pi_handed = mv->pi.handed ? mv->pi.n : 0;
	spin_unlock(&vm->record_lock);
	trace_kvm_thin_move_end(vm->id, mv->result, vm->move_step, vm->blackout_ns,
				vm->quiesce_ns, vm->rebuild_ns, vm->state_ns, vm->commit_ns);
}

/*
 * The VM runs again (moved, or on its old core): from here on the trigger does not stop
 * the thread, whose teardown of the old VM must not fail halfway (an unmap that a signal
 * interrupts would leave KVM's private memory slots mapped in the VMM).  A stop that
 * came meanwhile is dropped with the signal.
 */
static void klu_move_settled(struct klu_move *mv)
{
	disallow_signal(SIGKILL);
	complete(&mv->settled);
}

static int klu_move_thread(void *data)
{
	struct mem_cgroup *memcg, *was_memcg;
	struct klu_move *mv = data;
	struct klu_vm *vm = mv->vm;
	char from[KLU_TAG_MAX];
	struct klu_core *to;
	unsigned long uaddr;
	int r;

	allow_signal(SIGKILL);		/* klu_move_vm()'s way to stop a move that waits */
	if (!mmget_not_zero(vm->mm)) {
		r = klu_fail(mv, -ESRCH, "the VMM is exiting");
		goto out;
	}
	kthread_use_mm(vm->mm);
	/*
	 * What the move allocates for the VM (the new VM and its vCPUs, memslot bitmaps,
	 * the carried dirty bits) is charged, as KVM charges it for the VMM, to the VMM's
	 * memory cgroup, not to the root one this thread runs in.
	 */
	memcg = get_mem_cgroup_from_mm(vm->mm);
	was_memcg = set_active_memcg(memcg);
	uaddr = vm_mmap(NULL, 0, KLU_SCRATCH_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, 0);
	if (IS_ERR_VALUE(uaddr)) {
		r = klu_fail(mv, (long)uaddr, "no scratch memory in the VMM");
		goto out_mm;
	}
	mv->scratch = (void __user *)uaddr;

	strscpy(from, READ_ONCE(vm->core)->tag, sizeof(from));
	r = klu_step(mv, KLU_STEP_CHECK);
	if (!r) {
		mutex_lock(&vm->files_lock);
		r = klu_move_check(mv);
		mutex_unlock(&vm->files_lock);
	}
	/* The MSRs to move depend on the old core only: listed before the blackout. */
	if (!r)
		r = klu_msr_list(mv, vm->core);
	if (r)
		goto out_record;
	trace_kvm_thin_move_start(vm->id, vm->pid, from, mv->to->tag);
	mv->t0 = ktime_get_ns();
	r = klu_step(mv, KLU_STEP_QUIESCE);
	if (!r)
		r = klu_quiesce(mv);
	if (r) {
		/* Nothing was stopped for good: let parked vCPUs go on. */
		WRITE_ONCE(vm->moving, false);
		wake_up_all(&vm->wq);
		goto out_record;
	}
	/* vm->lock (write) and files_lock are held: the VM is ours. */
	mv->t_quiet = ktime_get_ns();
	r = klu_move_prepare(mv);
	if (!r)
		r = klu_detach_irqfds(mv);
	if (!r)
		r = klu_rebuild(mv);
	mv->t_rebuilt = ktime_get_ns();
	if (!r)
		r = klu_xfer_state(mv);
	mv->t_state = ktime_get_ns();
	if (!r)
		r = klu_commit(mv);
	if (r) {
		klu_scratch_renew(mv);
		klu_move_discard(mv);
	} else {
		klu_journal_resample_kick(&vm->journal);
	}
	if (mv->irqfds_off)
		mv->bp_kept = klu_bypass_move_end(vm);
	klu_pi_move_end(&mv->pi);
	mv->result = r;
	klu_move_record(mv, from, ktime_get_ns());
	mutex_unlock(&vm->files_lock);
	klu_resume(vm);
	klu_move_settled(mv);
	/*
	 * The old VM (or the half-built new one) is torn down here, after the vCPUs run
	 * again, not by a vCPU thread on its way back into the guest (tearing a VM down
	 * takes longer than the blackout), and at a low priority (nice 10: about a tenth
	 * of a CPU that a busy vCPU shares with it), so that the vCPUs run first.  The
	 * trigger returns once the old VMs are gone, so that the old core can unload.
	 */
	set_user_nice(current, 10);	/* the vCPUs first, but the teardown still ends */
	klu_close_graves(&mv->graves);
	goto out_scratch;
out_record:
	mv->result = r;
	klu_move_record(mv, from, ktime_get_ns());
	klu_move_settled(mv);
out_scratch:
	vm_munmap((unsigned long)mv->scratch, KLU_SCRATCH_SIZE);
out_mm:
	set_active_memcg(was_memcg);
	mem_cgroup_put(memcg);
	kthread_unuse_mm(vm->mm);
	mmput(vm->mm);
out:
	mv->result = r;
	if (!completion_done(&mv->settled))
		klu_move_settled(mv);
	if (READ_ONCE(mv->orphaned))
		pr_warn("move of VM %lu (pid %d) to %s, which its trigger gave up on, ended: %d; the VM runs on %s\n",
			vm->id, vm->pid, mv->to->tag, r, READ_ONCE(vm->core)->tag);
	WRITE_ONCE(vm->mover_busy, false);
	complete(&mv->done);
	to = mv->to;
	klu_move_put(mv);
	klu_vm_put(vm);
	module_put(to->vendor);
	module_put_and_kthread_exit(0);
}

/*
 * Wait for @mv's thread @t: until its VM runs again, move_timeout_ms, then SIGKILL and as
 * long again (at most 55 s each); then for its teardown of the old VM.  False if the VM
 * still does not run: the thread then ends on its own, and puts what it holds.
 */
static bool klu_move_wait(struct klu_move *mv, struct task_struct *t)
{
	unsigned int ms = clamp(klu_move_timeout_ms, klu_quiesce_ms + 1000, KLU_MOVE_TIMEOUT_MAX);
	unsigned long tmo = msecs_to_jiffies(ms);
	struct klu_vm *vm = mv->vm;

	if (!wait_for_completion_timeout(&mv->settled, tmo)) {
		pr_err("move of VM %lu (pid %d): not done after %u ms, at step %s; stopping it (it waits on memory of the VMM's, or on a call into the core)\n",
		       vm->id, vm->pid, ms, klu_step_name[READ_ONCE(mv->step)] ?: "start");
		WRITE_ONCE(mv->stopped, true);
		send_sig(SIGKILL, t, 1);
		if (!wait_for_completion_timeout(&mv->settled, tmo)) {
			pr_err("move of VM %lu (pid %d): still not done %u ms after it was stopped; the trigger goes on, and the VM cannot move until its move ends\n",
			       vm->id, vm->pid, ms);
			WRITE_ONCE(mv->orphaned, true);
			return false;
		}
	}
	/* The old VM's teardown: not the VMM's memory, and it ends. */
	wait_for_completion(&mv->done);
	return true;
}

/* Move @vm to core @to: 0, or -errno with the reason logged. */
static int klu_move_vm(struct klu_vm *vm, struct klu_core *to)
{
	struct klu_move *mv;
	struct task_struct *t;
	char from[KLU_TAG_MAX];
	bool done;
	int r;

	if (READ_ONCE(vm->mover_busy)) {
		pr_err("move of VM %lu (pid %d): its last move has not ended; not moved\n",
		       vm->id, vm->pid);
		return -EBUSY;
	}
	mv = kzalloc(sizeof(*mv), GFP_KERNEL);
	if (!mv)
		return -ENOMEM;
	mv->vm = vm;
	mv->to = to;
	init_completion(&mv->settled);
	init_completion(&mv->done);
	refcount_set(&mv->users, 2);
	INIT_LIST_HEAD(&mv->graves);
	strscpy(from, READ_ONCE(vm->core)->tag, sizeof(from));
	t = kthread_create(klu_move_thread, mv, "klu-move-%lu", vm->id);
	if (IS_ERR(t)) {
		pr_err("move of VM %lu (pid %d) from %s to %s failed: cannot start the move thread (%ld)\n",
		       vm->id, vm->pid, from, to->tag, PTR_ERR(t));
		kfree(mv);
		return PTR_ERR(t);
	}
	/* The thread may outlive the trigger (klu_move_wait()): it holds its own. */
	get_task_struct(t);
	klu_vm_get(vm);
	__module_get(to->vendor);
	__module_get(THIS_MODULE);
	WRITE_ONCE(vm->mover_busy, true);
	wake_up_process(t);
	done = klu_move_wait(mv, t);
	put_task_struct(t);
	if (!done) {
		klu_move_put(mv);
		return -ETIMEDOUT;
	}
	r = mv->result;
	if (r)
		pr_err("move of VM %lu (pid %d) from %s to %s failed at step %s: %s (%d)%s; it runs on %s\n",
		       vm->id, vm->pid, from, to->tag,
		       klu_step_name[mv->step] ?: "start",
		       mv->why[0] ? mv->why : "error", r,
		       mv->stopped && r != -ETIMEDOUT ? ", stopped past move_timeout_ms" : "",
		       from);
	else
		pr_info("moved VM %lu (pid %d, %d vCPUs) from %s to %s: blackout %llu us (quiesce %llu, rebuild %llu, state %llu, commit %llu)\n",
			vm->id, vm->pid, vm->nr_vcpus, from, to->tag, vm->blackout_ns / 1000,
			vm->quiesce_ns / 1000, vm->rebuild_ns / 1000, vm->state_ns / 1000,
			vm->commit_ns / 1000);
	if (vm->bypass_fallback)
		pr_info("VM %lu: %u irq bypass(es) disconnected and connected again (remapped mode): %s\n",
			vm->id, vm->bypass_fallback,
			mv->bp_why[0] ? mv->bp_why :
			"the IOMMU posts into AVIC pages, which a move does not hand over");
	klu_move_put(mv);
	return r;
}

/* ---- the trigger --------------------------------------------------------------- */

/* The last trigger, for reading /sys/kernel/kvm_thin/move. */
static struct {
	char to[KLU_TAG_MAX];
	int moved, failed, skipped, total;
	u64 ns;
	bool running;
} klu_last;

struct klu_trigger {
	struct klu_core *to;
	long id;		/* one VM, or -1 for all */
	int first_error;
};

static int klu_trigger_one(struct klu_vm *vm, void *data)
{
	struct klu_trigger *t = data;
	int r;

	if (t->id >= 0 && vm->id != t->id)
		return 0;
	if (READ_ONCE(vm->core) == t->to) {
		klu_last.skipped++;
		return 0;
	}
	klu_last.total++;
	pr_info("move %d: VM %lu (pid %d) to %s\n", klu_last.total, vm->id, vm->pid,
		t->to->tag);
	r = klu_move_vm(vm, t->to);
	if (r) {
		klu_last.failed++;
		if (!t->first_error)
			t->first_error = r;
	} else {
		klu_last.moved++;
	}
	return 0;
}

/*
 * The trigger's one line: "<tag>" moves every VM, "<vm id> <tag>" one.  Nothing else
 * is taken: not a third word, not a tag cut short, not a number for a tag.
 */
static int klu_parse_move(const char *buf, size_t count, long *id, char *tag)
{
	char line[48], *rest, *word;

	if (count >= sizeof(line)) {
		pr_err("move: a line of %zu bytes is longer than any trigger\n", count);
		return -EINVAL;
	}
	memcpy(line, buf, count);
	line[count] = 0;
	rest = strim(line);
	word = strsep(&rest, " \t");
	rest = rest ? skip_spaces(rest) : NULL;
	*id = -1;
	if (rest && *rest) {
		if (kstrtol(word, 10, id) || *id < 0) {
			pr_err("move: '%s' is not a VM id; write '<tag>' (every VM) or '<vm id> <tag>' (one VM)\n",
			       word);
			return -EINVAL;
		}
		word = rest;
		if (strpbrk(word, " \t")) {
			pr_err("move: more than two words; write '<tag>' (every VM) or '<vm id> <tag>' (one VM)\n");
			return -EINVAL;
		}
	}
	if (!klu_tag_ok(word)) {
		if (!*word)
			pr_err("move: write '<tag>' (every VM) or '<vm id> <tag>' (one VM)\n");
		else if (*id < 0 && isdigit(*word))
			pr_err("move: '%s' is not a core tag, which starts with a letter; to move one VM, write '<vm id> <tag>'\n",
			       word);
		else
			pr_err("move: '%.*s' is not a core tag: a lower-case letter, then letters, digits and _, at most %d characters\n",
			       KLU_TAG_MAX + 8, word, KLU_TAG_MAX - 1);
		return -EINVAL;
	}
	strscpy(tag, word, KLU_TAG_MAX);
	return 0;
}

static ssize_t move_store(struct kobject *kobj, struct kobj_attribute *attr,
			  const char *buf, size_t count)
{
	struct klu_trigger t = { .id = -1 };
	struct klu_core *prev_active;
	char tag[KLU_TAG_MAX] = "";
	u64 start;
	int r;

	r = klu_parse_move(buf, count, &t.id, tag);
	if (r)
		return r;
	if (!mutex_trylock(&klu_move_lock)) {
		pr_err("move: another move is under way\n");
		return -EBUSY;
	}
	mutex_lock(&klu_cores_lock);
	t.to = klu_core_by_tag(tag);
	if (t.to && !try_module_get(t.to->vendor))
		t.to = NULL;
	prev_active = klu_core_active_locked();
	/* Moving every VM: new VMs go to the new core too, from now on. */
	if (t.to && t.id < 0)
		klu_core_set_active(t.to);
	mutex_unlock(&klu_cores_lock);
	if (!t.to) {
		mutex_unlock(&klu_move_lock);
		pr_err("move: no core with tag '%s' is loaded; see /sys/kernel/kvm_thin/cores\n",
		       tag);
		return -ENOENT;
	}

	memset(&klu_last, 0, sizeof(klu_last));
	strscpy(klu_last.to, tag, sizeof(klu_last.to));
	klu_last.running = true;
	start = ktime_get_ns();
	klu_vms_for_each(klu_trigger_one, &t);
	klu_last.ns = ktime_get_ns() - start;
	klu_last.running = false;
	if (t.id >= 0 && !klu_last.total && !klu_last.skipped) {
		pr_err("move: no VM with id %ld\n", t.id);
		t.first_error = -ENOENT;
	}
	/* A failed switch of every VM leaves new VMs where they went before, too. */
	if (t.first_error && t.id < 0) {
		mutex_lock(&klu_cores_lock);
		if (prev_active && klu_core_active_locked() == t.to &&
		    klu_core_by_tag(prev_active->tag) == prev_active)
			klu_core_set_active(prev_active);
		mutex_unlock(&klu_cores_lock);
	}
	pr_info("move to %s: %d moved, %d failed, %d already there, in %llu us\n", tag,
		klu_last.moved, klu_last.failed, klu_last.skipped, klu_last.ns / 1000);
	module_put(t.to->vendor);
	mutex_unlock(&klu_move_lock);
	return t.first_error ?: count;
}

static ssize_t move_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%s to=%s moved=%d failed=%d skipped=%d of=%d ns=%llu\n",
			  klu_last.running ? "running" : klu_last.to[0] ? "done" : "none",
			  klu_last.to[0] ? klu_last.to : "-", klu_last.moved, klu_last.failed,
			  klu_last.skipped, klu_last.total, klu_last.ns);
}

static struct kobj_attribute move_attr = __ATTR_RW(move);

int klu_move_init(struct kobject *parent)
{
	return sysfs_create_file(parent, &move_attr.attr);
}
