// SPDX-License-Identifier: GPL-2.0
/*
 * vm_hostile [-t mmap|pending|fdswap|caps|refuse|all|hwowner|argflip|memcg|irqlost|stall|
 *             sharedfd]
 * [-n N]: what a buggy or hostile VMM does to its own files while its VM moves between two
 * cores.  The VMM may hurt its own VM; it must not hang, oops or corrupt the host,
 * and its guest, if the VMM plays by KVM's rules again, must compute right.  The VM
 * has one vCPU whose guest does port-I/O echo round trips (OUT a value, IN it back),
 * and the host checks their sum.
 *
 *   mmap     two threads map the vCPU's kvm_run page and unmap it, in a loop, one of
 *            them reading it too, while the VM moves N times (default 50) with its
 *            guest running.  Each move waits until the threads have mapped again and
 *            the guest has done one more round since the last: the moves and the
 *            mappings interleave however fast the machine is.  Every move must
 *            succeed and every sum be right.
 *            (A mapping used to take the VM's lock under the mmap lock, while a move
 *            takes the mmap lock under the VM's lock: a deadlock of the VMM and of
 *            every later move.)
 *   pending  N rounds (default 10): the VMM answers an IN exit in kvm_run but does not
 *            run the vCPU again, the VM moves, and then two threads enter KVM_RUN on
 *            the vCPU at once, both with immediate_exit set.  Each must return EINTR,
 *            and the exit must be completed once: the guest's sum is right.  (Both
 *            threads used to complete the exit on the old core's vCPU, and both put
 *            the reference to it: a use after free that KASAN sees.)  N more rounds
 *            write the TSC and the debug registers between the move and the next
 *            KVM_RUN, which must find them after the run.  (They used to go to the
 *            old vCPU, and were lost when the exit completed.)
 *   fdswap   N vCPUs (default 64) are created while another thread frees the fd
 *            number each will get and puts an eventfd there, over and over; each
 *            KVM_CREATE_VCPU must give a vCPU or EBADF.  Then the VM must move
 *            there and back, or, if a creation was refused (the core's vCPU then has
 *            no file), say it is not movable and be refused; its guest must compute
 *            right.  (kvm_thin used to take
 *            whatever file was at that number as the core's vCPU, and a move then
 *            called the eventfd's missing ioctl handler.)  Whether the race is hit
 *            depends on the scheduler: the test says how many were refused.
 *   refuse   a VM whose vCPU 0 spins and whose vCPU 1 halts, neither ever leaving
 *            KVM_RUN (KLU_MODE_SPIN), has N moves (default 3) fail at the check and N
 *            at the quiesce step (fail_move_step), then moves there and back, then
 *            is made unmovable (a Hyper-V event channel) and gets N refusals
 *            (EOPNOTSUPP).
 *            Each failed move must return within quiesce_ms + 1 s, and the guest
 *            must have run on after each.  (A failed move used to wait for the VM's
 *            lock, which its vCPUs hold in KVM_RUN, to record its result: for ever.)
 *
 *   caps     the VMM enables one capability (KVM_CAP_HALT_POLL) N times (default
 *            1000000) with the same value: the VM must stay movable and move there
 *            and back, its guest computing right.  Then 300 calls each with another
 *            value: past kvm_thin's bound on the calls it keeps to replay (256), the
 *            VM must say it is not movable, and a move must be refused with
 *            EOPNOTSUPP, its guest running on.  (kvm_thin used to keep every call:
 *            a journal, and a replay in the move's blackout, without bound.)
 *   hwowner  (only with -t, and with no VM on the host) another hypervisor holds
 *            hardware virtualisation: the test module klu_hw_owner has set EFER.SVME
 *            or CR4.VMXE on every CPU.  KVM_CREATE_VM must fail with EBUSY, as on
 *            stock KVM, and the bit must still be set on every CPU afterwards.
 *            (kvm_thin used to take the bit for its own and share it, and the last
 *            VM's end would have turned it off under its owner.)  Skips without the
 *            module.
 *
 *   argflip  (only with -t: its VM ends up unmovable) the VMM changes the argument of
 *            a KVM_ENABLE_CAP(KVM_CAP_HALT_POLL) while it is read: the argument
 *            straddles two pages, the second one missing and registered with a
 *            userfaultfd, whose handler changes the first page's halt-polling time
 *            (1000 ns to 2000 ns) before it fills the second.  Whoever reads the
 *            argument first gets 1000, whoever reads it next 2000.  The call must
 *            succeed, the VM must say that the argument changed while the core ran it
 *            and be refused a move, and its guest must compute right.  (kvm_thin used
 *            to read the argument for its journal again after the core's call, and to
 *            replay that second copy, which the core never checked, on the next core,
 *            with the mover's credentials.)
 *   memcg    (only with -t) the VMM runs in a memory cgroup of its own (cgroup v2,
 *            mounted if need be) and its VM has a 32 GiB memory slot that logs dirty
 *            pages, whose bitmap KVM allocates (2 MiB of vmalloc, charged to the
 *            caller's cgroup).  After a move, the new VM's must be charged to the
 *            VMM's cgroup too: its "vmalloc" in memory.stat must keep at least half
 *            of what the VM added.  (The move thread used to build the new VM charged
 *            to the root cgroup: a VMM's limit did not hold across an upgrade.)
 *            Skips without a memory controller.
 *   irqlost  (only with -t: its VM ends up stopped) a move fails after the VM's irqfds
 *            left it, and they cannot be attached to the old VM again
 *            (fail_move_step=10).  The VM must fail every ioctl with EIO, say why in
 *            movable, refuse a move, and go away when its files close.  (kvm_thin
 *            used to log the loss and let the guest run on without those
 *            interrupts.)
 *   stall    (only with -t) a move waits on guest memory that the VMM never serves: the
 *            VM has a one-page slot where vCPU 0's MSR_KVM_WALL_CLOCK_NEW points (KVM
 *            writes the wall clock there when the MSR is set), and the page is then
 *            dropped and registered with a userfaultfd that takes the fault and never
 *            answers.  A move sets that MSR on the new vCPU and waits.  With
 *            move_timeout_ms at 3000, the trigger must return with ETIMEDOUT, the VM
 *            stay on its core and compute, and, the userfaultfd closed, move there
 *            and back.  (The mover used to wait for ever, holding the VM's vCPUs
 *            stopped and every later move of any VM.)
 *   sharedfd (only with -t) two VMs have an irqfd on one eventfd, whose irq-bypass
 *            producer (klu_bypass_producer) the first VM's irqfd consumes; while a move
 *            of the second VM waits as in stall, the first VM's irqfd is deassigned.
 *            The producer must be disconnected from it then (del_consumer, no save),
 *            and the second VM move on afterwards and compute right.  (A move used to
 *            arm the bypass of every irqfd on its eventfds, another VM's too, and the
 *            second VM's irqfd then took over the first VM's saved connection.)
 *
 * Without -t, the first five (all), each with its default N.  Skips without kvm_thin
 * or with one core loaded.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "klu_thin.h"
#include "klu_vm.h"

#define ITERATIONS	2000u	/* echo round trips a round (pending) */
#define SUM		(ITERATIONS * (ITERATIONS - 1) / 2)
#define MMAP_ITERATIONS	100u	/* a shorter round beside the mappers (mmap) */
#define MMAP_SUM	(MMAP_ITERATIONS * (MMAP_ITERATIONS - 1) / 2)

static struct klu_vm *vm;
static int vm_id;
static char core_a[64], core_b[64];
static unsigned int stop, rounds, maps;		/* KLU_READ/KLU_WRITE */

static void set_params(unsigned int iterations)
{
	*klu_vm_params(vm) = (struct klu_params) {
		.mode = KLU_MODE_EXITS,
		.iterations = iterations,
		.exits = KLU_EXITS_PIO,
	};
}

/* Move the VM to A or B by @i, and check that it went. */
static void move(unsigned int i)
{
	const char *to = i % 2 ? core_a : core_b;
	char buf[512];
	int err = klu_thin_move(vm_id, to);

	if (err) {
		klu_thin_vm_file(vm_id, "last_move", buf, sizeof(buf));
		klu_fail("moving %u of VM %d to %s: %s; last_move: %s", i + 1, vm_id, to,
			 strerror(err), buf);
	}
}

/* ---- mmap ---------------------------------------------------------------------- */

static void *guest_rounds(void *arg)
{
	struct klu_result res;
	unsigned int n = 0;

	while (!KLU_READ(stop)) {
		set_params(MMAP_ITERATIONS);
		klu_vcpu_restart(vm, 0);	/* from the entry: another test may have run */
		klu_vcpu_run_to_done(vm, 0, &res);
		if (res.nr_words != 1 || res.words[0] != MMAP_SUM)
			klu_fail("round %u: echo sum 0x%x (%d words), want 0x%x", n, res.words[0],
				 res.nr_words, MMAP_SUM);
		KLU_WRITE(rounds, ++n);
	}
	return NULL;
}

/*
 * With @arg, each mapping is read too (its fault waits out a move, without the mmap
 * lock); without, the thread is in mmap() or munmap() all the time, a move included.
 */
static void *mapper(void *arg)
{
	while (!KLU_READ(stop)) {
		struct kvm_run *run = mmap(NULL, vm->run_size, PROT_READ, MAP_SHARED,
					   vm->vcpu_fd[0], 0);

		if (run == MAP_FAILED)
			klu_fail("mmap of the vCPU file: %s", strerror(errno));
		/* the fault: served by whichever core runs the VM */
		if (arg && KLU_READ(run->exit_reason) > 1000)
			klu_fail("kvm_run says exit reason %u", run->exit_reason);
		munmap(run, vm->run_size);
		__atomic_add_fetch(&maps, 1, __ATOMIC_RELEASE);
		sched_yield();	/* the vCPU and the mover get their share of the CPU */
	}
	return NULL;
}

static void test_mmap(unsigned int n, int nr)
{
	unsigned int i, r, m;
	pthread_t g, t[2];

	KLU_WRITE(stop, 0);
	pthread_create(&g, NULL, guest_rounds, NULL);
	pthread_create(&t[0], NULL, mapper, NULL);
	pthread_create(&t[1], NULL, mapper, (void *)1);
	for (i = 0; i < n; i++) {
		r = KLU_READ(rounds);
		m = KLU_READ(maps);
		while (KLU_READ(rounds) == r || KLU_READ(maps) == m)
			usleep(1000);
		move(i);
		if (i % 10 == 9 || i + 1 == n)
			printf("# %u moves; the guest did %u rounds, the mappers %u maps\n", i + 1,
			       KLU_READ(rounds), KLU_READ(maps));
	}
	KLU_WRITE(stop, 1);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	pthread_join(g, NULL);
	printf("ok %d - mmap: %u moves while two threads map and unmap kvm_run; %s\n", nr, n,
	       "every move and every sum right");
}

/* ---- pending ------------------------------------------------------------------- */

static pthread_barrier_t both;

struct runner {
	int err;	/* errno of KVM_RUN, or 0 if it returned an exit */
};

static void *run_once(void *arg)
{
	struct runner *r = arg;

	pthread_barrier_wait(&both);
	r->err = ioctl(vm->vcpu_fd[0], KVM_RUN, 0) < 0 ? errno : 0;
	return NULL;
}

/*
 * One round of the echo guest, run here.  At the IN exit number @at the answer is
 * written, the VM moves (@i), and two threads enter KVM_RUN at once.
 */
#define MSR_TSC		0x10			/* IA32_TIME_STAMP_COUNTER */
#define WINDOW_TSC(i)	(((i) + 1ull) << 50)	/* far from any TSC the guest ran to */

struct tsc_msr {
	struct kvm_msrs h;
	struct kvm_msr_entry e;
};

/*
 * In the window between the move and the vCPU's next KVM_RUN (its exit still the old
 * vCPU's), the VMM writes state that an exit does not touch, the debug registers, and
 * the TSC, which a completion does not carry (as a QEMU reset at such an exit would).
 */
static void window_write(unsigned int i, struct kvm_debugregs *set)
{
	struct tsc_msr tsc = { .h.nmsrs = 1, .e.index = MSR_TSC, .e.data = WINDOW_TSC(i) };
	struct kvm_debugregs now;
	int k;

	if (ioctl(vm->vcpu_fd[0], KVM_SET_MSRS, &tsc) != 1)
		klu_fail("round %u: KVM_SET_MSRS of the TSC: %s", i, strerror(errno));
	if (ioctl(vm->vcpu_fd[0], KVM_GET_DEBUGREGS, &now))
		klu_fail("round %u: KVM_GET_DEBUGREGS: %s", i, strerror(errno));
	*set = now;
	for (k = 0; k < 4; k++)
		set->db[k] = 0x10000ull * (i + 1) + 0x100 * k;
	if (ioctl(vm->vcpu_fd[0], KVM_SET_DEBUGREGS, set))
		klu_fail("round %u: KVM_SET_DEBUGREGS: %s", i, strerror(errno));
}

/* What was written in the window is the vCPU's after its exit completed. */
static void window_check(unsigned int i, const struct kvm_debugregs *set)
{
	struct tsc_msr tsc = { .h.nmsrs = 1, .e.index = MSR_TSC };
	struct kvm_debugregs now;
	int k;

	if (ioctl(vm->vcpu_fd[0], KVM_GET_MSRS, &tsc) != 1)
		klu_fail("round %u: KVM_GET_MSRS of the TSC: %s", i, strerror(errno));
	/* it counts on from the value set, by less than 2^40 cycles in one round */
	if (tsc.e.data < WINDOW_TSC(i) || tsc.e.data - WINDOW_TSC(i) >= 1ull << 40)
		klu_fail("round %u: the TSC is 0x%llx after the run, but 0x%llx was set %s", i,
			 (unsigned long long)tsc.e.data, WINDOW_TSC(i),
			 "between the move and the run: lost");
	if (ioctl(vm->vcpu_fd[0], KVM_GET_DEBUGREGS, &now))
		klu_fail("round %u: KVM_GET_DEBUGREGS: %s", i, strerror(errno));
	for (k = 0; k < 4; k++)
		if (now.db[k] != set->db[k])
			klu_fail("round %u: DR%d is 0x%llx after the run, but 0x%llx was set %s", i,
				 k, (unsigned long long)now.db[k], (unsigned long long)set->db[k],
				 "between the move and the run: lost");
}

static void pending_round(unsigned int i, unsigned int at, bool window)
{
	struct kvm_debugregs dr;
	struct kvm_run *run = vm->run[0];
	struct runner r[2] = {};
	uint32_t echo = 0, *data, sum = 0;
	unsigned int ins = 0, words = 0;
	pthread_t t[2];
	int k;

	set_params(ITERATIONS);
	klu_vcpu_restart(vm, 0);
	for (;;) {
		if (ioctl(vm->vcpu_fd[0], KVM_RUN, 0) < 0) {
			if (errno == EINTR)
				continue;
			klu_fail("round %u: KVM_RUN: %s", i, strerror(errno));
		}
		if (run->exit_reason != KVM_EXIT_IO || run->io.size != 4 || run->io.count != 1)
			klu_fail("round %u: exit %u", i, run->exit_reason);
		data = (uint32_t *)((uint8_t *)run + run->io.data_offset);
		if (run->io.direction == KVM_EXIT_IO_IN) {
			*data = echo;
			if (++ins != at)
				continue;
			/* answered, not completed: the move leaves the exit to the old vCPU */
			move(i);
			if (window) {
				window_write(i, &dr);
				continue;	/* KVM_RUN completes the exit, then goes on */
			}
			run->immediate_exit = 1;
			for (k = 0; k < 2; k++)
				pthread_create(&t[k], NULL, run_once, &r[k]);
			for (k = 0; k < 2; k++)
				pthread_join(t[k], NULL);
			run->immediate_exit = 0;
			for (k = 0; k < 2; k++)
				if (r[k].err != EINTR)
					klu_fail("round %u: thread %d's KVM_RUN: %s, want EINTR",
						 i, k, r[k].err ? strerror(r[k].err) : "an exit");
			continue;
		}
		if (run->io.port == KLU_PORT_ECHO) {
			echo = *data;
		} else if (run->io.port == KLU_PORT_RESULT) {
			sum = *data;
			words++;
		} else if (run->io.port == KLU_PORT_DONE) {
			break;
		} else if (run->io.port != KLU_PORT_PROGRESS) {
			klu_fail("round %u: OUT to port 0x%x", i, run->io.port);
		}
	}
	if (words != 1 || sum != SUM)
		klu_fail("round %u: echo sum 0x%x (%u words), want 0x%x: the exit was completed %s",
			 i, sum, words, SUM, sum < SUM ? "never" : "twice, or wrongly");
	if (window)
		window_check(i, &dr);
}

static void test_pending(unsigned int n, int nr)
{
	unsigned int i;

	pthread_barrier_init(&both, NULL, 2);
	for (i = 0; i < n; i++) {
		pending_round(2 * i, 1 + (i * 397) % (ITERATIONS - 1), false);
		pending_round(2 * i + 1, 1 + (i * 211) % (ITERATIONS - 1), true);
	}
	printf("ok %d - pending: %u moves with an exit left to complete, %s; %u more %s\n",
	       nr, n, "then two KVM_RUNs at once; each EINTR, every sum right", n,
	       "with the TSC and debug registers written before the run: kept");
}

/* ---- fdswap -------------------------------------------------------------------- */

static int swap_target = -1;			/* KLU_READ/KLU_WRITE; -1: idle */
static unsigned int swap_idle;			/* KLU_READ/KLU_WRITE */

/* Frees fd number swap_target and puts an eventfd there, over and over. */
static void *swapper(void *arg)
{
	int efd = (int)(long)arg;

	while (!KLU_READ(stop)) {
		int n = KLU_READ(swap_target);

		if (n < 0) {
			KLU_WRITE(swap_idle, 1);
			sched_yield();
			continue;
		}
		KLU_WRITE(swap_idle, 0);
		close(n);
		dup2(efd, n);
	}
	return NULL;
}

static void test_fdswap(unsigned int n, int nr)
{
	unsigned int i, refused = 0, created = 0;
	struct klu_result res;
	int efd, fd, err;
	pthread_t t;
	long r;

	efd = eventfd(0, EFD_CLOEXEC);
	if (efd < 0)
		klu_fail("eventfd: %s", strerror(errno));
	KLU_WRITE(stop, 0);	/* the mmap test, if it ran, left it set */
	pthread_create(&t, NULL, swapper, (void *)(long)efd);
	for (i = 0; i < n; i++) {
		/* the number KVM_CREATE_VCPU's file will get: the lowest free one */
		fd = dup(efd);
		if (fd < 0)
			klu_fail("dup: %s", strerror(errno));
		close(fd);
		KLU_WRITE(swap_target, fd);
		r = ioctl(vm->vm_fd, KVM_CREATE_VCPU, 1 + i);
		err = errno;
		KLU_WRITE(swap_target, -1);
		while (!KLU_READ(swap_idle))
			sched_yield();
		if (r >= 0)
			created++;
		else if (err == EBADF)
			refused++;
		else
			klu_fail("KVM_CREATE_VCPU(%u), fd %d swapped: %s, want a vCPU or EBADF",
				 1 + i, fd, strerror(err));
	}
	KLU_WRITE(stop, 1);
	pthread_join(t, NULL);
	KLU_WRITE(stop, 0);
	printf("# %u vCPUs created under fd swaps: %u came back, %u refused (%s)\n", n,
	       created, refused, "EBADF: the file there was not the core's");
	/* a move calls every vCPU kvm_thin holds: a foreign file among them would oops */
	if (!refused) {
		printf("# the race was not hit in %u tries: nothing was substituted\n", n);
		move(0);
		move(1);
	} else {
		/* a vCPU of the core's without a file of ours: the VM may not move */
		char buf[256];

		klu_thin_vm_file(vm_id, "movable", buf, sizeof(buf));
		printf("# movable: %s\n", buf);
		if (strncmp(buf, "no: ", 4))
			klu_fail("after %u refused vCPUs, movable says '%s', want no: ...",
				 refused, buf);
		err = klu_thin_move(vm_id, core_b);
		if (err != EOPNOTSUPP)
			klu_fail("a move of the VM with refused vCPUs: %s, want EOPNOTSUPP",
				 err ? strerror(err) : "it moved");
	}
	set_params(ITERATIONS);
	klu_vcpu_restart(vm, 0);
	klu_vcpu_run_to_done(vm, 0, &res);
	if (res.nr_words != 1 || res.words[0] != SUM)
		klu_fail("after the swaps and two moves: echo sum 0x%x (%d words), want 0x%x",
			 res.words[0], res.nr_words, SUM);
	printf("ok %d - fdswap: %u vCPUs created under fd swaps (%u refused), %s\n", nr, n,
	       refused, refused ? "the move refused, the guest's sum right" :
	       "two moves, the guest's sum right");
}

/* ---- caps ---------------------------------------------------------------------- */

#define CAPS_DISTINCT	300u	/* past kvm_thin's KLU_CAPS_MAX, 256 */

static int halt_poll(__u64 ns)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_HALT_POLL, .args[0] = ns };

	return ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) ? errno : 0;
}

static void echo_round(const char *when)
{
	struct klu_result res;

	set_params(ITERATIONS);
	klu_vcpu_restart(vm, 0);
	klu_vcpu_run_to_done(vm, 0, &res);
	if (res.nr_words != 1 || res.words[0] != SUM)
		klu_fail("%s: echo sum 0x%x (%d words), want 0x%x", when, res.words[0],
			 res.nr_words, SUM);
}

static void test_caps(unsigned int n, int nr)
{
	char buf[512];
	unsigned int i;
	int err;

	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_HALT_POLL) <= 0)
		klu_skip("caps: no KVM_CAP_HALT_POLL");
	for (i = 0; i < n; i++) {
		err = halt_poll(1000);
		if (err)
			klu_fail("KVM_ENABLE_CAP(KVM_CAP_HALT_POLL) %u of %u: %s", i + 1, n,
				 strerror(err));
	}
	klu_thin_vm_file(vm_id, "movable", buf, sizeof(buf));
	if (strncmp(buf, "yes", 3))
		klu_fail("after %u identical KVM_ENABLE_CAP calls, movable says: %s", n, buf);
	move(0);
	move(1);
	echo_round("after the moves");
	for (i = 0; i < CAPS_DISTINCT; i++) {
		err = halt_poll(i + 1);
		if (err)
			klu_fail("KVM_ENABLE_CAP(KVM_CAP_HALT_POLL, %u): %s", i + 1, strerror(err));
	}
	klu_thin_vm_file(vm_id, "movable", buf, sizeof(buf));
	if (strncmp(buf, "no", 2) || !strstr(buf, "KVM_ENABLE_CAP"))
		klu_fail("after %u different KVM_ENABLE_CAP calls, movable says: %s",
			 CAPS_DISTINCT, buf);
	err = klu_thin_move(vm_id, core_b);
	if (err != EOPNOTSUPP)
		klu_fail("a move of the VM past the bound: %s, want EOPNOTSUPP", strerror(err));
	echo_round("after the refusal");
	printf("ok %d - caps: %u identical KVM_ENABLE_CAP calls and two moves, %s (%s)\n",
	       nr, n, "then 300 different ones and a refused move", buf);
}

/* ---- argflip ------------------------------------------------------------------ */

struct flip {
	int uffd;
	char *page2;			/* the missing page, the argument's tail */
	struct kvm_enable_cap *cap;	/* straddles the two pages */
	int faults;
};

/* The first fault on the tail: change the head (the value), then fill the tail. */
static void *flipper(void *arg)
{
	struct flip *f = arg;
	struct uffd_msg msg;
	struct uffdio_copy copy;
	static char zero[4096] __attribute__((aligned(4096)));

	if (read(f->uffd, &msg, sizeof(msg)) != sizeof(msg))
		klu_fail("read of the userfaultfd: %s", strerror(errno));
	if (msg.event != UFFD_EVENT_PAGEFAULT)
		klu_fail("userfaultfd event %u, not a page fault", msg.event);
	KLU_WRITE(f->cap->args[0], 2000);
	KLU_WRITE(f->faults, 1);
	copy = (struct uffdio_copy) {
		.dst = (unsigned long)f->page2,
		.src = (unsigned long)zero,
		.len = sizeof(zero),
	};
	if (ioctl(f->uffd, UFFDIO_COPY, &copy))
		klu_fail("UFFDIO_COPY: %s", strerror(errno));
	return NULL;
}

static void test_argflip(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {};
	struct flip f = {};
	pthread_t t;
	char buf[512];
	char *mem;
	int err;

	if (ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_HALT_POLL) <= 0)
		klu_skip("argflip: no KVM_CAP_HALT_POLL");
	f.uffd = syscall(__NR_userfaultfd, O_CLOEXEC);
	if (f.uffd < 0)
		klu_skip("argflip: no userfaultfd: %s", strerror(errno));
	if (ioctl(f.uffd, UFFDIO_API, &api))
		klu_fail("UFFDIO_API: %s", strerror(errno));
	mem = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		klu_fail("mmap: %s", strerror(errno));
	f.page2 = mem + page;
	/* cap, flags and args[0] on the first page; args[1] on are in the missing one */
	f.cap = (void *)(f.page2 - offsetof(struct kvm_enable_cap, args[1]));
	/* field by field: the tail must stay missing until the fault */
	f.cap->cap = KVM_CAP_HALT_POLL;
	f.cap->flags = 0;
	f.cap->args[0] = 1000;
	reg.range.start = (unsigned long)f.page2;
	reg.range.len = page;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(f.uffd, UFFDIO_REGISTER, &reg))
		klu_fail("UFFDIO_REGISTER: %s", strerror(errno));
	if (pthread_create(&t, NULL, flipper, &f))
		klu_fail("pthread_create");
	err = ioctl(vm->vm_fd, KVM_ENABLE_CAP, f.cap) ? errno : 0;
	if (!KLU_READ(f.faults)) {	/* the call never read the tail */
		pthread_cancel(t);
		pthread_join(t, NULL);
		klu_fail("KVM_ENABLE_CAP (%s) did not fault on its argument's missing page",
			 err ? strerror(err) : "success");
	}
	pthread_join(t, NULL);
	if (err)
		klu_fail("KVM_ENABLE_CAP(KVM_CAP_HALT_POLL) with its value changed under it: %s",
			 strerror(err));
	klu_thin_vm_file(vm_id, "movable", buf, sizeof(buf));
	if (strncmp(buf, "no", 2) || !strstr(buf, "changed while the core ran it"))
		klu_fail("after an argument that changed while it was read, movable says: %s",
			 buf);
	err = klu_thin_move(vm_id, core_b);
	if (err != EOPNOTSUPP)
		klu_fail("a move of the VM: %s, want EOPNOTSUPP", err ? strerror(err) : "success");
	echo_round("after the refusal");
	printf("# movable: %s\n", buf);
	printf("ok 1 - argflip: an argument changed while it was read (%d fault) is kept by %s\n",
	       f.faults, "no journal: the VM is unmovable, its move refused, its guest right");
	munmap(mem, 2 * page);
	close(f.uffd);
}

/* ---- memcg -------------------------------------------------------------------- */

#define CG_ROOT		"/sys/fs/cgroup"
#define MEMCG_SLOT	7
#define MEMCG_SLOT_GPA	(64ull << 30)
#define MEMCG_SLOT_SIZE	(32ull << 30)	/* a dirty bitmap of 2 x 1 MiB */

/* The "vmalloc" bytes of memory.stat in @cg. */
static long long cg_vmalloc(const char *cg)
{
	char path[256], line[256];
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.stat", cg);
	f = fopen(path, "r");
	if (!f)
		klu_fail("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "vmalloc %lld", &v) == 1)
			break;
	fclose(f);
	if (v < 0)
		klu_skip("memcg: no vmalloc line in %s", path);
	return v;
}

static void test_memcg(void)
{
	struct kvm_userspace_memory_region slot = {
		.slot = MEMCG_SLOT,
		.flags = KVM_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = MEMCG_SLOT_GPA,
		.memory_size = MEMCG_SLOT_SIZE,
	};
	char a[64] = "", b[64] = "", buf[512], cg[128], pid[32], path_buf[160];
	long long v0, v1, v2;
	struct klu_vm *v;
	void *mem;
	int id, err;

	if (access(CG_ROOT "/cgroup.controllers", R_OK) &&
	    mount("none", CG_ROOT, "cgroup2", 0, NULL))
		klu_skip("memcg: no cgroup v2 at " CG_ROOT ": %s", strerror(errno));
	if (!klu_read_line(CG_ROOT "/cgroup.controllers", buf, sizeof(buf)) ||
	    !strstr(buf, "memory"))
		klu_skip("memcg: no memory controller in " CG_ROOT "/cgroup.controllers");
	if (klu_write_file(CG_ROOT "/cgroup.subtree_control", "+memory"))
		klu_skip("memcg: cannot enable the memory controller for child cgroups");
	snprintf(cg, sizeof(cg), CG_ROOT "/klu-memcg-%d", getpid());
	if (mkdir(cg, 0755))
		klu_fail("mkdir %s: %s", cg, strerror(errno));
	snprintf(path_buf, sizeof(path_buf), "%s/cgroup.procs", cg);
	snprintf(pid, sizeof(pid), "%d", getpid());
	if (klu_write_file(path_buf, pid))
		klu_fail("cannot move pid %s into %s", pid, cg);
	v0 = cg_vmalloc(cg);
	v = klu_vm_new(KLU_DATA_GPA, 1, 0);
	id = klu_thin_vm_id();
	if (id < 0)
		klu_fail("no VM of pid %d in " KLU_THIN "/vms", getpid());
	klu_thin_pick_cores(id, a, b, sizeof(a));
	mem = mmap(NULL, MEMCG_SLOT_SIZE, PROT_NONE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED)
		klu_fail("mmap of %llu GiB: %s", MEMCG_SLOT_SIZE >> 30, strerror(errno));
	slot.userspace_addr = (unsigned long)mem;
	if (ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot))
		klu_fail("KVM_SET_USER_MEMORY_REGION of %llu GiB, logging dirty pages: %s",
			 MEMCG_SLOT_SIZE >> 30, strerror(errno));
	v1 = cg_vmalloc(cg);
	if (v1 - v0 < (1 << 20))
		klu_fail("the VM added %lld bytes of vmalloc to %s, want its 2 MiB dirty bitmap",
			 v1 - v0, cg);
	err = klu_thin_move(id, b);
	if (err) {
		klu_thin_vm_file(id, "last_move", buf, sizeof(buf));
		klu_fail("moving VM %d to %s: %s; last_move: %s", id, b, strerror(err), buf);
	}
	v2 = cg_vmalloc(cg);
	printf("# %s: vmalloc %lld bytes before the VM, %lld with it on %s, %lld %s %s\n",
	       cg, v0, v1, a, v2, "after its move to", b);
	if (v2 - v0 < (v1 - v0) / 2)
		klu_fail("after the move the VMM's cgroup holds %lld bytes of the VM's %lld: %s",
			 v2 - v0, v1 - v0, "the new VM was charged elsewhere");
	klu_vm_destroy(v);
	munmap(mem, MEMCG_SLOT_SIZE);
	klu_write_file(CG_ROOT "/cgroup.procs", pid);
	rmdir(cg);
	printf("ok 1 - memcg: the moved VM is charged to its VMM's memory cgroup\n");
}

/* ---- refuse ------------------------------------------------------------------- */

#define FAIL_STEP	"/sys/module/kvm_thin/parameters/fail_move_step"
#define QUIESCE_MS	"/sys/module/kvm_thin/parameters/quiesce_ms"

static struct klu_vm *spin_vm;
static int spin_id;
static unsigned int spin_count, spin_done;	/* KLU_READ/KLU_WRITE */
static unsigned int spin_returns[2];		/* KVM_RUNs that returned, each vCPU */

/*
 * A vCPU of the spinning VM.  Every return from KVM_RUN is counted: the test holds
 * only if, from the first failed move to the last, there was none.
 */
static void *spin_vcpu(void *arg)
{
	int v = (int)(long)arg, words = 0;
	struct kvm_run *run = spin_vm->run[v];

	for (;;) {
		int r = ioctl(spin_vm->vcpu_fd[v], KVM_RUN, 0);

		__atomic_add_fetch(&spin_returns[v], 1, __ATOMIC_RELEASE);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			klu_fail("vCPU %d KVM_RUN: %s", v, strerror(errno));
		if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT)
			klu_fail("vCPU %d: exit %u", v, run->exit_reason);
		if (run->io.port == KLU_PORT_RESULT) {
			KLU_WRITE(spin_count, *(uint32_t *)((uint8_t *)run + run->io.data_offset));
			words++;
		} else if (run->io.port == KLU_PORT_DONE) {
			break;
		}
	}
	if (words != 1)
		klu_fail("vCPU %d reported %d results, want 1", v, words);
	KLU_WRITE(spin_done, 1);
	return NULL;
}

struct trigger {
	const char *to;
	int err;
	unsigned int done;			/* KLU_READ/KLU_WRITE */
};

static void *trigger(void *arg)
{
	struct trigger *t = arg;

	t->err = klu_thin_move(spin_id, t->to);
	KLU_WRITE(t->done, 1);
	return NULL;
}

/* The spinning vCPU's count, once it has gone on from @since. */
static unsigned int spun_past(unsigned int since)
{
	struct klu_irq_counts *c = (void *)(spin_vm->mem + KLU_COUNTS_GPA);

	while (KLU_READ(c->ticks) == since)
		usleep(1000);
	return KLU_READ(c->ticks);
}

/*
 * A move of the spinning VM to @to that must fail with @want within @bound_ms: it
 * may not wait for the vCPUs, which never leave KVM_RUN.
 */
static void refused(const char *what, const char *to, int want, unsigned int bound_ms)
{
	struct trigger t = { .to = to };
	uint64_t t0 = klu_now_ns(), took;
	char buf[512];
	pthread_t th;

	pthread_create(&th, NULL, trigger, &t);
	while (!KLU_READ(t.done) && klu_now_ns() - t0 < bound_ms * 1000000ull)
		usleep(1000);
	took = (klu_now_ns() - t0) / 1000000;
	if (!KLU_READ(t.done)) {
		klu_write_file(FAIL_STEP, "0\n");
		klu_fail("%s: no return after %llu ms (quiesce_ms + 1 s = %u ms), %s", what,
			 (unsigned long long)took, bound_ms, "with the VM's vCPUs in KVM_RUN");
	}
	pthread_join(th, NULL);
	klu_thin_vm_file(spin_id, "last_move", buf, sizeof(buf));
	if (t.err != want)
		klu_fail("%s: the move ended with %s, want %s; last_move: %s", what,
			 t.err ? strerror(t.err) : "success", strerror(want), buf);
	printf("# %s: it failed in %llu ms (%s); last_move: %s\n", what,
	       (unsigned long long)took, strerror(t.err), buf);
}

/* Neither vCPU returned from KVM_RUN since @returns were counted, during @what. */
static void no_returns(const unsigned int *returns, const char *what)
{
	int v;

	for (v = 0; v < 2; v++)
		if (KLU_READ(spin_returns[v]) != returns[v])
			klu_fail("vCPU %d left KVM_RUN %u times during %s: not the VM to test",
				 v, KLU_READ(spin_returns[v]) - returns[v], what);
}

static void test_refuse(unsigned int n, int nr)
{
	char qms[32], a[64] = "", b[64] = "", step[8];
	unsigned int bound, i, s, spun = 0, returns[2];
	pthread_t th[2];
	bool faults;
	int v;

	if (!klu_read_line(QUIESCE_MS, qms, sizeof(qms)))
		klu_fail("cannot read " QUIESCE_MS ": %s", strerror(errno));
	bound = strtoul(qms, NULL, 0) + 1000;
	spin_vm = klu_vm_new(KLU_DATA_GPA, 2, KLU_VM_IRQCHIP);
	spin_id = klu_thin_vm_id();
	if (spin_id < 0)
		klu_fail("no VM of pid %d in " KLU_THIN "/vms", getpid());
	klu_thin_pick_cores(spin_id, a, b, sizeof(a));
	*klu_vm_params(spin_vm) = (struct klu_params) { .mode = KLU_MODE_SPIN };
	for (v = 0; v < 2; v++)
		pthread_create(&th[v], NULL, spin_vcpu, (void *)(long)v);
	spun = spun_past(spun);
	returns[0] = KLU_READ(spin_returns[0]);
	returns[1] = KLU_READ(spin_returns[1]);
	printf("# VM %d: vCPU 0 spins and vCPU 1 halts, neither leaves KVM_RUN\n", spin_id);

	/* Failures before the quiesce (the check, and the quiesce step itself). */
	faults = klu_thin_fault_injection();
	if (!faults)
		printf("# kvm_thin was loaded without fault_injection=1: no failed moves\n");
	for (s = 1; s <= 2 && faults; s++) {
		for (i = 0; i < n; i++) {
			char what[64];

			snprintf(step, sizeof(step), "%u\n", s);
			snprintf(what, sizeof(what), "failure %u of %u at step %u", i + 1, n, s);
			if (klu_write_file(FAIL_STEP, step))
				klu_fail("cannot write " FAIL_STEP);
			refused(what, b, EIO, bound);
			klu_write_file(FAIL_STEP, "0\n");
			spun = spun_past(spun);
		}
	}
	no_returns(returns, "the failed moves");
	/* It still moves, and spins on. */
	if (klu_thin_move(spin_id, b) || klu_thin_move(spin_id, a))
		klu_fail("after the failed moves, VM %d does not move to %s and back", spin_id, b);
	spun = spun_past(spun);
	printf("# VM %d moved to %s and back, and spins on\n", spin_id, b);
	returns[0] = KLU_READ(spin_returns[0]);
	returns[1] = KLU_READ(spin_returns[1]);

	/* A VM a move cannot carry: refused at the check, n times. */
	v = klu_thin_unmovable(spin_vm);
	if (v) {
		printf("# KVM_HYPERV_EVENTFD: %s: not tried as unmovable\n", strerror(v));
	} else {
		for (i = 0; i < n; i++) {
			char what[64];

			snprintf(what, sizeof(what), "unmovable (%s), refusal %u of %u",
				 "Hyper-V eventfd", i + 1, n);
			refused(what, b, EOPNOTSUPP, bound);
			spun = spun_past(spun);
		}
		no_returns(returns, "the refusals");
	}
	KLU_WRITE(klu_vm_params(spin_vm)->stop, 1);
	while (!KLU_READ(spin_done))
		usleep(1000);
	if (KLU_READ(spin_count) < spun)
		klu_fail("the spinning vCPU reported %u counts, the host saw %u",
			 KLU_READ(spin_count), spun);
	printf("ok %d - refuse: %u moves failing at the check and the quiesce step, %s %u ms\n",
	       nr, faults ? 2 * n : 0,
	       "and the refusals of the unmovable VM, each returned within", bound);
	/* vCPU 1 halts until the process ends. */
}

/* ---- irqlost ------------------------------------------------------------------ */

/*
 * A move that fails after the VM's irqfds left it, and whose irqfds then cannot be
 * attached to the old VM again (fail_move_step=10): the guest would run on without
 * the interrupts they carry.  The VM must be stopped instead, loudly: every ioctl of
 * its files EIO, movable saying why; and it must still go away when its VMM closes it.
 */
static void test_irqlost(void)
{
	struct kvm_clock_data clock = {};
	char a[64] = "", b[64] = "", buf[512], path[128];
	struct klu_vm *v;
	unsigned int i;
	int id, efd, err;

	v = klu_vm_new(KLU_DATA_GPA, 1, KLU_VM_IRQCHIP);
	id = klu_thin_vm_id();
	if (id < 0)
		klu_fail("no VM of pid %d in " KLU_THIN "/vms", getpid());
	klu_thin_pick_cores(id, a, b, sizeof(a));
	efd = klu_vm_msi_irqfd(v, 1, KLU_VEC_MSI);
	if (!klu_thin_fault_injection())
		klu_skip("irqlost: kvm_thin was loaded without fault_injection=1");
	if (klu_write_file(FAIL_STEP, "10\n"))
		klu_fail("cannot write " FAIL_STEP);
	err = klu_thin_move(id, b);
	klu_write_file(FAIL_STEP, "0\n");
	klu_thin_vm_file(id, "last_move", buf, sizeof(buf));
	if (err != EIO || strncmp(buf, "failed", 6))
		klu_fail("the move with its irqfds lost: %s, want EIO; last_move: %s",
			 err ? strerror(err) : "success", buf);
	err = ioctl(v->vcpu_fd[0], KVM_RUN, 0) ? errno : 0;
	if (err != EIO)
		klu_fail("KVM_RUN of the VM whose irqfds were lost: %s, want EIO",
			 err ? strerror(err) : "success");
	err = ioctl(v->vm_fd, KVM_GET_CLOCK, &clock) ? errno : 0;
	if (err != EIO)
		klu_fail("KVM_GET_CLOCK of the VM whose irqfds were lost: %s, want EIO",
			 err ? strerror(err) : "success");
	klu_thin_vm_file(id, "movable", buf, sizeof(buf));
	if (strncmp(buf, "no: dead:", 9) || !strstr(buf, "irqfds"))
		klu_fail("movable of the VM whose irqfds were lost: %s", buf);
	err = klu_thin_move(id, b);
	if (err != EOPNOTSUPP)
		klu_fail("a move of the dead VM: %s, want EOPNOTSUPP",
			 err ? strerror(err) : "success");
	printf("# VM %d: KVM_RUN and KVM_GET_CLOCK fail with EIO; movable: %s\n", id, buf);
	close(efd);
	klu_vm_destroy(v);
	/* Its files closed, the VM leaves the registry (a bound against a leak only). */
	snprintf(path, sizeof(path), KLU_THIN "/vms/%d", id);
	for (i = 0; i < 30000 && !access(path, F_OK); i++)
		usleep(1000);
	if (!access(path, F_OK))
		klu_fail("%s is still there 30 s after the VMM closed the dead VM", path);
	printf("ok 1 - irqlost: a failed move that lost the VM's irqfds stopped the VM %s\n",
	       "(EIO), which went away with its files");
}

#define HW_OWNER_HELD	"/sys/module/klu_hw_owner/parameters/held"

static int hw_held(void)
{
	char buf[32] = "";
	FILE *f = fopen(HW_OWNER_HELD, "r");

	if (!f)
		klu_skip("no %s: insmod modules/klu_hw_owner.ko first", HW_OWNER_HELD);
	if (!fgets(buf, sizeof(buf), f))
		klu_fail("cannot read %s", HW_OWNER_HELD);
	fclose(f);
	return atoi(buf);
}

static void test_hwowner(void)
{
	int cpus = sysconf(_SC_NPROCESSORS_ONLN), held = hw_held(), kvm, fd;

	if (held != cpus)
		klu_fail("klu_hw_owner holds VMX/SVM on %d of %d CPUs before any VM", held, cpus);
	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		klu_skip("no /dev/kvm: %s", strerror(errno));
	fd = ioctl(kvm, KVM_CREATE_VM, 0);
	if (fd >= 0)
		klu_fail("KVM_CREATE_VM made a VM while another hypervisor holds VMX/SVM");
	if (errno != EBUSY)
		klu_fail("KVM_CREATE_VM failed with %s, not EBUSY", strerror(errno));
	held = hw_held();
	if (held != cpus)
		klu_fail("after the refused VM, %d of %d CPUs have VMX/SVM: turned off under it",
			 held, cpus);
	close(kvm);
	printf("ok 1 - hwowner: KVM_CREATE_VM refused with EBUSY, all %d CPUs keep VMX/SVM\n",
	       cpus);
}

/* ---- stall ------------------------------------------------------------------- */

#define TIMEOUT_MS	"/sys/module/kvm_thin/parameters/move_timeout_ms"
#define STALL_SLOT	8
#define STALL_GPA	(32ull << 30)
#define STALL_TIMEOUT	3000u	/* move_timeout_ms for the test */
#ifndef MSR_KVM_WALL_CLOCK_NEW
#define MSR_KVM_WALL_CLOCK_NEW	0x4b564d00
#endif

struct stall {
	int uffd;
	unsigned int faults;		/* KLU_READ/KLU_WRITE */
	unsigned long long addr;	/* where the fault was */
};

/* Take the first fault and never serve it. */
static void *staller(void *arg)
{
	struct stall *st = arg;
	struct uffd_msg msg;

	if (read(st->uffd, &msg, sizeof(msg)) != sizeof(msg))
		return NULL;		/* the test closed it */
	if (msg.event != UFFD_EVENT_PAGEFAULT)
		klu_fail("userfaultfd event %u, not a page fault", msg.event);
	st->addr = msg.arg.pagefault.address;
	KLU_WRITE(st->faults, 1);
	return NULL;
}

struct vm_trigger {
	int id;
	const char *to;
	int err;
	unsigned int done;			/* KLU_READ/KLU_WRITE */
};

static void *vm_trigger(void *arg)
{
	struct vm_trigger *t = arg;

	t->err = klu_thin_move(t->id, t->to);
	KLU_WRITE(t->done, 1);
	return NULL;
}

/*
 * Make a move of @v wait on the VMM's memory: a one-page slot where vCPU 0's
 * MSR_KVM_WALL_CLOCK_NEW points, its page dropped and registered with a userfaultfd
 * that st->uffd gets; staller() takes the fault and never answers.  KVM writes the wall
 * clock there when a move sets the MSR on the new vCPU, after the irqfds left the old
 * VM.
 */
static void stall_arm(struct klu_vm *v, struct stall *st)
{
	long page = sysconf(_SC_PAGESIZE);
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {};
	struct kvm_userspace_memory_region slot = {
		.slot = STALL_SLOT,
		.guest_phys_addr = STALL_GPA,
		.memory_size = page,
	};
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} msr = { .h.nmsrs = 1, .e.index = MSR_KVM_WALL_CLOCK_NEW, .e.data = STALL_GPA };
	uint32_t *mem;

	st->uffd = syscall(__NR_userfaultfd, O_CLOEXEC);
	if (st->uffd < 0)
		klu_skip("stall: no userfaultfd: %s", strerror(errno));
	if (ioctl(st->uffd, UFFDIO_API, &api))
		klu_fail("UFFDIO_API: %s", strerror(errno));
	mem = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		klu_fail("mmap: %s", strerror(errno));
	memset(mem, 0, page);
	slot.userspace_addr = (unsigned long)mem;
	if (ioctl(v->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot))
		klu_fail("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));
	/* KVM writes the wall clock into guest memory when the MSR is set, at once */
	if (ioctl(v->vcpu_fd[0], KVM_SET_MSRS, &msr) != 1)
		klu_skip("stall: the core does not take MSR_KVM_WALL_CLOCK_NEW");
	if (!KLU_READ(mem[0]))
		klu_skip("stall: the core did not write the wall clock at 0x%llx", STALL_GPA);
	/* the page goes, and a fault on it waits for the handler, which never answers */
	if (madvise(mem, page, MADV_DONTNEED))
		klu_fail("madvise: %s", strerror(errno));
	reg.range.start = (unsigned long)mem;
	reg.range.len = page;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(st->uffd, UFFDIO_REGISTER, &reg))
		klu_fail("UFFDIO_REGISTER: %s", strerror(errno));
}

/* move_timeout_ms set to STALL_TIMEOUT, the old value in @old; the bound for the trigger */
static unsigned int stall_timeout(char *old, size_t size)
{
	unsigned int qms;
	char buf[64];

	if (!klu_read_line(QUIESCE_MS, buf, sizeof(buf)))
		klu_fail("cannot read " QUIESCE_MS ": %s", strerror(errno));
	qms = strtoul(buf, NULL, 0);
	if (klu_read_line(TIMEOUT_MS, old, size))
		klu_write_file(TIMEOUT_MS, "3000\n");
	else		/* a kvm_thin without the bound: the test shows what happens */
		printf("# kvm_thin has no move_timeout_ms\n");
	/* the trigger's two waits (klu_move_wait()), and time to spare */
	return 2 * (qms + 1000 < STALL_TIMEOUT ? STALL_TIMEOUT : qms + 1000) + 30000;
}

static void test_stall(void)
{
	struct vm_trigger t = { .id = vm_id, .to = core_b };
	char buf[512], old_tmo[32] = "", core[64];
	unsigned int bound_ms;
	struct stall st = {};
	uint64_t t0, took;
	pthread_t th, tt;

	stall_arm(vm, &st);	/* first: it may skip, with move_timeout_ms as it was */
	bound_ms = stall_timeout(old_tmo, sizeof(old_tmo));
	pthread_create(&th, NULL, staller, &st);
	echo_round("before the move");
	t0 = klu_now_ns();
	pthread_create(&tt, NULL, vm_trigger, &t);
	while (!KLU_READ(t.done) && klu_now_ns() - t0 < bound_ms * 1000000ull)
		usleep(1000);
	took = (klu_now_ns() - t0) / 1000000;
	if (!KLU_READ(t.done))
		klu_fail("the move did not return in %llu ms (twice move_timeout_ms + 30 s) %s",
			 (unsigned long long)took, KLU_READ(st.faults) ?
			 "while the mover waited on a userfaultfd page of the guest's" :
			 "and nothing faulted on the guest's page");
	pthread_join(tt, NULL);
	if (!KLU_READ(st.faults))
		klu_fail("the move (%s) did not write the wall clock on the new core: %s",
			 t.err ? strerror(t.err) : "success", "nothing was made to wait");
	klu_thin_vm_file(vm_id, "last_move", buf, sizeof(buf));
	klu_thin_vm_file(vm_id, "core", core, sizeof(core));
	printf("# the mover faulted at 0x%llx; the move returned after %llu ms (%s); %s %s; %s%s\n",
	       st.addr, (unsigned long long)took, t.err ? strerror(t.err) : "success", "core",
	       core, "last_move: ", buf);
	/* stopped in the vCPU state, before the commit: it must not have committed */
	if (t.err != ETIMEDOUT)
		klu_fail("the stopped move returned %s, want ETIMEDOUT; last_move: %s",
			 t.err ? strerror(t.err) : "success", buf);
	if (strcmp(core, core_a))
		klu_fail("after the stopped move the VM is on %s, not on %s", core, core_a);
	/* the VMM plays fair again: its page is there, and the VM moves there and back */
	close(st.uffd);
	pthread_join(th, NULL);
	echo_round("after the stopped move");
	move(0);
	echo_round("after the next move");
	move(1);
	echo_round("after the move back");
	if (old_tmo[0])
		klu_write_file(TIMEOUT_MS, old_tmo);
	printf("ok 1 - stall: a move that waited on the VMM's memory failed in %llu ms, %s\n",
	       (unsigned long long)took, "the VM ran on and moved again, its guest right");
}

/* ---- sharedfd ---------------------------------------------------------------- */

#define BP_DEV		"/dev/klu_bypass_producer"
#define SHARED_GSI	1
#define SHARED_VEC	0x40

/* klu_bypass_producer's interface (see its header comment) */
struct klu_bp_add {
	int32_t fd;
	int32_t irq;
};

#define KLU_BP_ADD	_IOW(0xbb, 1, struct klu_bp_add)

/* The callbacks the producers' log got since the last read, each after a space. */
static void bp_log(int bp, char *ops, size_t size)
{
	char buf[4096], op[32];
	const char *l;
	ssize_t n;
	size_t len = 0;

	ops[0] = 0;
	while ((n = read(bp, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = 0;
		for (l = buf; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
			if (sscanf(l, "%*u %*u %31s", op) == 1 && len + strlen(op) + 2 < size)
				len += sprintf(ops + len, " %s", op);
	}
	if (n < 0)
		klu_fail("reading " BP_DEV ": %s", strerror(errno));
}

/* /sys/kernel/kvm_thin/irqbypass's "save=" */
static long bp_saves(void)
{
	char buf[512];
	const char *p;

	if (!klu_read_line(KLU_THIN "/irqbypass", buf, sizeof(buf)))
		klu_fail("cannot read " KLU_THIN "/irqbypass: %s", strerror(errno));
	p = strstr(buf, " save=");
	if (!p)
		klu_fail(KLU_THIN "/irqbypass has no save=: %s", buf);
	return strtol(p + 6, NULL, 10);
}

/*
 * Two VMs have an irqfd on one eventfd, and a producer (klu_bypass_producer, where a
 * VFIO MSI would be) on it: irqbypass.ko pairs it with the first VM's irqfd, the only
 * consumer of the token.  A move of the second VM waits on its memory (stall_arm())
 * after its irqfds left it; meanwhile the first VM's VMM takes its irqfd away.  That
 * must disconnect the producer from it (del_consumer), as with stock KVM, not save it
 * for the second VM's move, which never had it; the stopped move then leaves the second
 * VM's irqfd on its old core, where it may take the free token as a new irqfd would,
 * and the VM must move again.  (A move used to arm every entry of its eventfds,
 * another VM's too: the first VM's unregister then parked the producer, and the second
 * VM's irqfd took it over with the first VM's saved state.)
 */
static void test_sharedfd(void)
{
	struct klu_bp_add add = { .irq = 0 };
	char buf[512], ops[256], old_tmo[32] = "", core[64];
	struct kvm_irqfd off = { .gsi = SHARED_GSI, .flags = KVM_IRQFD_FLAG_DEASSIGN };
	struct vm_trigger t = { .to = core_b };
	struct klu_vm *va, *vb;
	unsigned int bound_ms;
	struct stall st = {};
	long saves;
	uint64_t t0;
	pthread_t th, tt;
	int bp, efd, a_id;

	bp = open(BP_DEV, O_RDWR | O_CLOEXEC | O_NONBLOCK);
	if (bp < 0)
		klu_skip("sharedfd: no " BP_DEV " (insmod modules/klu_bypass_producer.ko): %s",
			 strerror(errno));
	va = klu_vm_new(KLU_DATA_GPA, 1, KLU_VM_IRQCHIP);
	a_id = klu_thin_vm_id();
	efd = klu_vm_msi_irqfd(va, SHARED_GSI, SHARED_VEC);
	vb = klu_vm_new(KLU_DATA_GPA, 1, KLU_VM_IRQCHIP);
	t.id = klu_thin_vm_id();
	if (a_id < 0 || t.id <= a_id)
		klu_fail("no two VMs of pid %d in " KLU_THIN "/vms (%d, %d)", getpid(), a_id,
			 t.id);
	klu_vm_msi_irqfd_on(vb, SHARED_GSI, SHARED_VEC, efd);
	add.fd = efd;
	if (ioctl(bp, KLU_BP_ADD, &add) < 0)
		klu_fail("KLU_BP_ADD on the shared eventfd: %s", strerror(errno));
	bp_log(bp, ops, sizeof(ops));
	if (!strstr(ops, "add_consumer"))
		klu_fail("the producer did not connect to VM %d's irqfd:%s", a_id, ops);
	klu_thin_pick_cores(t.id, core_a, core_b, sizeof(core_a));
	stall_arm(vb, &st);
	bound_ms = stall_timeout(old_tmo, sizeof(old_tmo));
	pthread_create(&th, NULL, staller, &st);
	saves = bp_saves();
	t0 = klu_now_ns();
	pthread_create(&tt, NULL, vm_trigger, &t);
	/* the move is in the new vCPU's state: past the detach of VM B's irqfds */
	while (!KLU_READ(st.faults) && !KLU_READ(t.done))
		usleep(1000);
	if (!KLU_READ(st.faults))
		klu_fail("the move of VM %d (%s) returned without waiting on its memory",
			 t.id, t.err ? strerror(t.err) : "success");
	off.fd = efd;
	if (ioctl(va->vm_fd, KVM_IRQFD, &off) < 0)
		klu_fail("KVM_IRQFD deassign on VM %d: %s", a_id, strerror(errno));
	bp_log(bp, ops, sizeof(ops));
	printf("# VM %d's irqfd went during VM %d's move: producer%s; save %+ld\n", a_id,
	       t.id, ops[0] ? ops : " (nothing)", bp_saves() - saves);
	if (!strstr(ops, "del_consumer") || bp_saves() != saves)
		klu_fail("VM %d's irqfd went, its producer not disconnected (%s, %ld more %s",
			 a_id, ops[0] ? ops : "no callback", bp_saves() - saves,
			 "saves): kept for another VM's move");
	while (!KLU_READ(t.done) && klu_now_ns() - t0 < bound_ms * 1000000ull)
		usleep(1000);
	if (!KLU_READ(t.done))
		klu_fail("the move of VM %d did not return in %u ms", t.id, bound_ms);
	pthread_join(tt, NULL);
	close(st.uffd);
	pthread_join(th, NULL);
	klu_thin_vm_file(t.id, "core", core, sizeof(core));
	if (t.err != ETIMEDOUT || strcmp(core, core_a))
		klu_fail("the stopped move of VM %d: %s, now on %s; want ETIMEDOUT, on %s", t.id,
			 t.err ? strerror(t.err) : "success", core, core_a);
	bp_log(bp, ops, sizeof(ops));
	printf("# VM %d's irqfd back on its old core: producer%s\n", t.id,
	       ops[0] ? ops : " (nothing)");
	t.err = klu_thin_move(t.id, core_b);
	if (t.err) {
		klu_thin_vm_file(t.id, "last_move", buf, sizeof(buf));
		klu_fail("VM %d's next move: %s; last_move: %s", t.id, strerror(t.err), buf);
	}
	bp_log(bp, ops, sizeof(ops));
	/* a move that fell back (posted interrupts, no handover) disconnects and connects */
	if (ops[0] && !klu_thin_last_move_field(t.id, "irqbypass_fallback"))
		klu_fail("VM %d's move with the producer on its irqfd called it:%s", t.id, ops);
	vm = vb;
	echo_round("VM B after its move");
	if (old_tmo[0])
		klu_write_file(TIMEOUT_MS, old_tmo);
	close(bp);
	close(efd);
	klu_vm_destroy(vb);
	klu_vm_destroy(va);
	vm = NULL;
	printf("ok 1 - sharedfd: %s, and the other VM moved on\n",
	       "an irqfd that leaves during another VM's move on its eventfd disconnects");
}

int main(int argc, char **argv)
{
	const char *test = "all";
	unsigned int n = 0;
	bool all;
	int opt;

	while ((opt = getopt(argc, argv, "t:n:")) != -1) {
		if (opt == 't') {
			test = optarg;
		} else if (opt == 'n') {
			n = strtoul(optarg, NULL, 0);
		} else {
			test = NULL;
			break;
		}
	}
	all = test && !strcmp(test, "all");
	if (!test || (!all && strcmp(test, "mmap") && strcmp(test, "pending") &&
		      strcmp(test, "fdswap") && strcmp(test, "caps") &&
		      strcmp(test, "refuse") && strcmp(test, "hwowner") &&
		      strcmp(test, "argflip") && strcmp(test, "memcg") &&
		      strcmp(test, "irqlost") && strcmp(test, "stall") &&
		      strcmp(test, "sharedfd"))) {
		fprintf(stderr,
			"usage: %s [-t mmap|pending|fdswap|caps|refuse|all|%s] [-n N]\n",
			argv[0], "hwowner|argflip|memcg|irqlost|stall|sharedfd");
		return KSFT_FAIL;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);	/* each line out before a hang */
	printf("TAP version 13\n1..%d\n", all ? 5 : 1);
	if (!strcmp(test, "hwowner")) {
		test_hwowner();
		return KSFT_PASS;
	}
	klu_thin_need_move();
	if (!strcmp(test, "irqlost")) {
		test_irqlost();
		return KSFT_PASS;
	}
	if (!strcmp(test, "memcg")) {
		test_memcg();
		return KSFT_PASS;
	}
	if (!strcmp(test, "sharedfd")) {
		test_sharedfd();
		return KSFT_PASS;
	}
	vm = klu_vm_create(KLU_DATA_GPA, 1);
	vm_id = klu_thin_vm_id();
	if (vm_id < 0)
		klu_fail("no VM of pid %d in " KLU_THIN "/vms", getpid());
	klu_thin_pick_cores(vm_id, core_a, core_b, sizeof(core_a));
	printf("# VM %d moves between %s and %s\n", vm_id, core_a, core_b);
	if (!strcmp(test, "argflip")) {
		test_argflip();
		return KSFT_PASS;
	}
	if (!strcmp(test, "stall")) {
		test_stall();
		return KSFT_PASS;
	}
	if (all || !strcmp(test, "mmap"))
		test_mmap(n ?: 50, 1);
	if (all || !strcmp(test, "pending"))
		test_pending(n ?: 10, all ? 2 : 1);
	if (all || !strcmp(test, "fdswap"))
		test_fdswap(n ?: 64, all ? 3 : 1);
	if (all) {
		/* fdswap may have left its VM unmovable: caps starts from a new one */
		klu_vm_destroy(vm);
		vm = klu_vm_create(KLU_DATA_GPA, 1);
		vm_id = klu_thin_vm_id();
		if (vm_id < 0)
			klu_fail("no new VM of pid %d in " KLU_THIN "/vms", getpid());
	}
	if (all || !strcmp(test, "caps"))
		test_caps(n ?: 1000000, all ? 4 : 1);	/* last on this VM: it is unmovable */
	klu_vm_destroy(vm);
	if (all || !strcmp(test, "refuse"))
		test_refuse(n ?: 3, all ? 5 : 1);	/* last: its halted vCPU stays */
	return KSFT_PASS;
}
