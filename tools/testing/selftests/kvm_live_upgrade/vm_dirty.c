// SPDX-License-Identifier: GPL-2.0
/*
 * vm_dirty [-n MOVES]: dirty-page logging across live moves, the way a migrating VMM
 * uses it.  A VM has a memory slot of 256 pages that logs dirty pages, and the host
 * keeps a copy of it that it updates from each KVM_GET_DIRTY_LOG alone, as a migration
 * does.  The guest writes pages of the slot when the host says.  For each move:
 *
 *   - pages written just before the move, a move while the vCPU spins in the guest, pages
 *     written just after it;
 *   - a page written by an insl whose exit is left for the VMM when the VM moves (KVM
 *     writes the page when the exit completes, on the old core), then one more page.
 *
 * After each, the next KVM_GET_DIRTY_LOG must have the bit of every page written since
 * the last one, and the copy must equal the slot.  A move that fails after it read the
 * old core's bits (fail_move_step=9, if the test can set it) must lose none either.
 * This runs twice: with KVM's plain dirty log (a GET clears), and with
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 and KVM_DIRTY_LOG_INITIALLY_SET (a GET reads, a
 * KVM_CLEAR_DIRTY_LOG clears), QEMU's default.  Bits for pages the guest did not write
 * are counted, and must be none: the guest touches the slot only to write.
 *
 * MOVES (default 4) per mode, between the VM's core and another.  Skips without
 * kvm_thin or with one core loaded.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "klu_thin.h"
#include "klu_vm.h"

#define PAGES		256u
#define PAGE		4096u
#define SLOT		1u
#define BATCH		4u	/* pages written before a move, and after it */
#define FAIL_PARAM	"/sys/module/kvm_thin/parameters/fail_move_step"
#define FAIL_AFTER_LOG	"9"	/* commit, past reading the old core's log */

static struct klu_vm *vm;
static struct kvm_run *run;
static int vm_id;
static bool manual;
static uint8_t *slot_mem, *copy;
static uint64_t bitmap[PAGES / 64];
static bool written[PAGES];	/* since the last collect */
static unsigned int gen, next_page, moves_done;
static char core_a[64], core_b[64];

/*
 * The mover thread: one move at a time, while the guest spins in a WAIT.  It sleeps on
 * a condition, not in a polling loop: in the Bochs bed every wakeup of a thread is an
 * XRSTOR, and Bochs' XRSTOR fails now and then (an emulator fault).
 */
static pthread_mutex_t mover_mx = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mover_cv = PTHREAD_COND_INITIALIZER;
static unsigned int mover_wait;		/* under mover_mx: the WAIT to move in, 0: none */
static bool mover_fail;
static int mover_err;

static void mover_set(unsigned int w)
{
	pthread_mutex_lock(&mover_mx);
	mover_wait = w;
	pthread_cond_broadcast(&mover_cv);
	pthread_mutex_unlock(&mover_mx);
}

static const char *other_core(void)
{
	char core[64];

	klu_thin_vm_file(vm_id, "core", core, sizeof(core));
	return strcmp(core, core_a) ? core_a : core_b;
}

/* Move the VM to its other core; with @fail, a move that must fail after the log. */
static int do_move(bool fail)
{
	const char *to = other_core();
	char buf[512];
	int err;

	if (fail && klu_write_file(FAIL_PARAM, FAIL_AFTER_LOG))
		klu_fail("cannot write " FAIL_PARAM);
	err = klu_thin_move(vm_id, to);
	if (fail)
		klu_write_file(FAIL_PARAM, "0");
	klu_thin_vm_file(vm_id, "last_move", buf, sizeof(buf));
	if (fail != !!err || (fail && !strstr(buf, "step=commit")))
		klu_fail("move %u to %s: %s, want %s; last_move: %s", moves_done + 1, to,
			 err ? strerror(err) : "done", fail ? "a failure at commit" : "done",
			 buf);
	moves_done++;
	return err;
}

static void *mover(void *arg)
{
	struct klu_params *p = klu_vm_params(vm);
	unsigned int w;

	for (;;) {
		pthread_mutex_lock(&mover_mx);
		while (!mover_wait)
			pthread_cond_wait(&mover_cv, &mover_mx);
		w = mover_wait;
		pthread_mutex_unlock(&mover_mx);
		if (w == ~0u)
			return NULL;
		/* The vCPU is in the guest, spinning, when the move starts. */
		while (KLU_READ(p->dirty_spin) != w)
			usleep(1000);
		mover_err = do_move(mover_fail);
		KLU_WRITE(p->dirty_go, w);
		mover_set(0);
	}
}

/* Run the vCPU to its next IN: a command fetch, or an INS's read. */
static void run_to_in(uint16_t port)
{
	for (;;) {
		if (ioctl(vm->vcpu_fd[0], KVM_RUN, 0) < 0) {
			if (errno == EINTR)	/* a move took it out of the guest */
				continue;
			klu_fail("KVM_RUN: %s", strerror(errno));
		}
		if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_IN &&
		    run->io.port == port && run->io.size == 4 && run->io.count == 1)
			return;
		klu_fail("exit %u (port 0x%x, dir %u), want an IN from port 0x%x",
			 run->exit_reason, run->io.port, run->io.direction, port);
	}
}

static void answer(uint32_t v)
{
	memcpy((uint8_t *)run + run->io.data_offset, &v, 4);
}

static uint32_t command(unsigned int op, unsigned int page)
{
	return op << 28 | (++gen & 0xfff) << 16 | page;
}

/* The guest is at a command fetch: give it @cmd, and run it to its next fetch. */
static void give(uint32_t cmd)
{
	answer(cmd);
	if (KLU_DIRTY_OP(cmd) == KLU_DIRTY_WRITE)
		written[KLU_DIRTY_PAGE(cmd)] = true;
	run_to_in(KLU_PORT_COMMAND);
}

static void write_pages(unsigned int n)
{
	while (n--) {
		give(command(KLU_DIRTY_WRITE, next_page));
		next_page = (next_page + 1) % PAGES;
	}
}

/* A move while the vCPU spins in the guest. */
static void move_spinning(bool fail)
{
	uint32_t cmd = command(KLU_DIRTY_WAIT, 0);

	mover_fail = fail;
	mover_set(cmd);
	give(cmd);
	pthread_mutex_lock(&mover_mx);
	while (mover_wait)
		pthread_cond_wait(&mover_cv, &mover_mx);
	pthread_mutex_unlock(&mover_mx);
}

/* An insl into a page, its exit left for the VMM while the VM moves. */
static void ins_across_move(void)
{
	unsigned int page = next_page;
	uint32_t cmd = command(KLU_DIRTY_INS, page);

	next_page = (next_page + 1) % PAGES;
	answer(cmd);
	run_to_in(KLU_PORT_ECHO);	/* the insl's read: the old core writes it later */
	answer(cmd ^ 0x0ff00000u);
	written[page] = true;
	do_move(false);
	run_to_in(KLU_PORT_COMMAND);	/* completes the insl on the old core, then on */
}

/* GET_DIRTY_LOG (and in manual mode CLEAR_DIRTY_LOG) into the copy; check it. */
static void collect(const char *when, bool check)
{
	struct kvm_dirty_log log = { .slot = SLOT, .dirty_bitmap = bitmap };
	struct kvm_clear_dirty_log clear = {
		.slot = SLOT, .num_pages = PAGES, .dirty_bitmap = bitmap,
	};
	unsigned int i, lost = 0, extra = 0, first_lost = 0;

	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		klu_fail("%s: KVM_GET_DIRTY_LOG: %s", when, strerror(errno));
	if (manual && ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0)
		klu_fail("%s: KVM_CLEAR_DIRTY_LOG: %s", when, strerror(errno));
	for (i = 0; i < PAGES; i++) {
		bool set = bitmap[i / 64] >> (i % 64) & 1;

		if (set)
			memcpy(copy + i * PAGE, slot_mem + i * PAGE, PAGE);
		if (written[i] && !set && !lost++)
			first_lost = i;
		extra += set && !written[i];
		written[i] = false;
	}
	if (!check)
		return;
	klu_check(!lost, "%s: the log has every page written since the last (%u missing, first %d)",
		  when, lost, lost ? (int)first_lost : -1);
	klu_check(!extra, "%s: no bit for a page the guest did not write (%u)", when, extra);
	klu_check(!memcmp(copy, slot_mem, PAGES * PAGE),
		  "%s: the copy made from the dirty log equals the slot", when);
}

static void run_mode(bool manual_mode, unsigned int moves, bool can_fail)
{
	struct kvm_userspace_memory_region region = {
		.slot = SLOT,
		.flags = KVM_MEM_LOG_DIRTY_PAGES,
		.guest_phys_addr = KLU_DIRTY_GPA,
		.memory_size = PAGES * PAGE,
	};
	char when[96];
	pthread_t t;
	unsigned int i;

	manual = manual_mode;
	vm = klu_vm_create(KLU_DATA_GPA, 1);
	run = vm->run[0];
	if (manual) {
		struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };
		long caps = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, cap.cap);

		if (!(caps & KVM_DIRTY_LOG_INITIALLY_SET))
			klu_skip("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 without INITIALLY_SET (%ld)",
				 caps);
		cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;
		if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
			klu_fail("KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2): %s", strerror(errno));
	}
	slot_mem = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	copy = calloc(PAGES, PAGE);
	if (slot_mem == MAP_FAILED || !copy)
		klu_fail("out of memory");
	region.userspace_addr = (uintptr_t)slot_mem;
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		klu_fail("KVM_SET_USER_MEMORY_REGION (dirty logging): %s", strerror(errno));
	*klu_vm_params(vm) = (struct klu_params){ .mode = KLU_MODE_DIRTY };

	vm_id = klu_thin_vm_id();
	if (vm_id < 0)
		klu_fail("no VM of pid %d in " KLU_THIN "/vms", getpid());
	core_a[0] = 0;
	core_b[0] = 0;
	klu_thin_pick_cores(vm_id, core_a, core_b, sizeof(core_a));
	printf("# %s dirty log: VM %d moves between %s and %s\n",
	       manual ? "manual (CLEAR_DIRTY_LOG, initially set)" : "plain", vm_id, core_a,
	       core_b);
	mover_set(0);
	if (pthread_create(&t, NULL, mover, NULL))
		klu_fail("pthread_create");

	run_to_in(KLU_PORT_COMMAND);
	collect("start", false);	/* manual: every bit, set initially */
	for (i = 0; i < moves; i++) {
		write_pages(BATCH);
		move_spinning(false);
		write_pages(BATCH);
		snprintf(when, sizeof(when), "%s, move %u (vCPU in the guest)",
			 manual ? "manual" : "plain", moves_done);
		collect(when, true);
		ins_across_move();
		write_pages(1);
		snprintf(when, sizeof(when), "%s, move %u (an insl's exit left to complete)",
			 manual ? "manual" : "plain", moves_done);
		collect(when, true);
	}
	if (can_fail) {
		write_pages(BATCH);
		move_spinning(true);
		write_pages(BATCH);
		snprintf(when, sizeof(when), "%s, a move that failed after reading the log",
			 manual ? "manual" : "plain");
		collect(when, true);
	}
	answer(command(KLU_DIRTY_STOP, 0));
	if (ioctl(vm->vcpu_fd[0], KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_IO ||
	    run->io.port != KLU_PORT_DONE)
		klu_fail("the guest did not finish after STOP");
	mover_set(~0u);
	pthread_join(t, NULL);
	klu_vm_destroy(vm);
	munmap(slot_mem, PAGES * PAGE);
	free(copy);
}

int main(int argc, char **argv)
{
	unsigned int moves = 4;
	bool can_fail;
	int opt;

	while ((opt = getopt(argc, argv, "n:")) != -1) {
		if (opt != 'n') {
			fprintf(stderr, "usage: %s [-n MOVES]\n", argv[0]);
			return KSFT_FAIL;
		}
		moves = strtoul(optarg, NULL, 0);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n1..1\n");
	klu_thin_need_move();
	can_fail = klu_thin_fault_injection();
	if (!can_fail)
		printf("# kvm_thin was loaded without fault_injection=1: no failed move\n");
	run_mode(false, moves, can_fail);
	run_mode(true, moves, can_fail);
	printf("%s 1 vm_dirty: %u moves, %d checks\n", klu_nr_failed ? "not ok" : "ok",
	       moves_done, klu_nr_checks);
	return klu_nr_failed ? KSFT_FAIL : KSFT_PASS;
}
