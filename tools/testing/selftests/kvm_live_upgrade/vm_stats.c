// SPDX-License-Identifier: GPL-2.0
/*
 * vm_stats: statistics files (KVM_GET_STATS_FD) report the VM that runs now, after live
 * moves, as a VMM reads them (QEMU's query-stats): the header and descriptors once, then
 * data by offset with pread.
 *
 * A VM with one vCPU, whose guest does rounds of port-I/O echoes (an OUT and an IN
 * each), has its vCPU's and its VM's statistics files opened before any move.  A round
 * of ROUND1 echoes, then a move; after it a round of ROUND2 echoes, and the vCPU's
 * io_exits must count the second round (the new core's vCPU starts from 0): at least
 * 2 * ROUND2, where a file still reading the old vCPU would show about 2 * ROUND1.  The
 * same after a move back.  The header and the descriptors must read the same after the
 * moves as before, and the VM's file must still read.  Skips without kvm_thin, with one
 * core, or without KVM_CAP_BINARY_STATS_FD.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "klu_thin.h"
#include "klu_vm.h"

#define ROUND1		4000u
#define ROUND2		600u

struct stats {
	int fd;
	struct kvm_stats_header hdr;
	char *head;		/* [0, data_offset) as read first */
};

static void stats_open(struct stats *s, int fd, const char *what)
{
	s->fd = ioctl(fd, KVM_GET_STATS_FD, 0);
	if (s->fd < 0)
		klu_fail("KVM_GET_STATS_FD of the %s: %s", what, strerror(errno));
	if (pread(s->fd, &s->hdr, sizeof(s->hdr), 0) != sizeof(s->hdr) ||
	    s->hdr.data_offset < sizeof(s->hdr) || s->hdr.data_offset > (1u << 20))
		klu_fail("the %s's statistics header: %s", what, strerror(errno));
	s->head = malloc(s->hdr.data_offset);
	if (!s->head || pread(s->fd, s->head, s->hdr.data_offset, 0) !=
	    (ssize_t)s->hdr.data_offset)
		klu_fail("the %s's statistics descriptors: %s", what, strerror(errno));
}

/* The offset in the data of the counter @name, from the descriptors read first. */
static long stats_find(struct stats *s, const char *name)
{
	size_t dsize = sizeof(struct kvm_stats_desc) + s->hdr.name_size;
	unsigned int i;

	for (i = 0; i < s->hdr.num_desc; i++) {
		struct kvm_stats_desc *d = (void *)(s->head + s->hdr.desc_offset + i * dsize);

		if (s->hdr.desc_offset + (i + 1) * dsize > s->hdr.data_offset)
			break;
		if (!strncmp(d->name, name, s->hdr.name_size))
			return d->offset;
	}
	klu_fail("no statistic '%s' in %u descriptors", name, s->hdr.num_desc);
}

static uint64_t stats_value(struct stats *s, long off)
{
	uint64_t v;

	if (pread(s->fd, &v, sizeof(v), s->hdr.data_offset + off) != sizeof(v))
		klu_fail("pread of a statistic: %s", strerror(errno));
	return v;
}

static void round_of(struct klu_vm *vm, unsigned int n)
{
	struct klu_result res;

	*klu_vm_params(vm) = (struct klu_params){
		.mode = KLU_MODE_EXITS, .iterations = n, .exits = KLU_EXITS_PIO,
	};
	klu_vcpu_restart(vm, 0);
	klu_vcpu_run_to_done(vm, 0, &res);
	if (res.nr_words != 1 || res.words[0] != n * (n - 1) / 2)
		klu_fail("the guest's echo sum is 0x%x, want 0x%x", res.words[0], n * (n - 1) / 2);
}

int main(void)
{
	char a[64] = "", b[64] = "", *again;
	struct stats vs, ms;
	struct klu_vm *vm;
	uint64_t v0, v;
	long io;
	int id, i, err;

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("TAP version 13\n1..1\n");
	klu_thin_need_move();
	vm = klu_vm_create(KLU_DATA_GPA, 1);
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_BINARY_STATS_FD) <= 0)
		klu_skip("no KVM_CAP_BINARY_STATS_FD");
	id = klu_thin_vm_id();
	if (id < 0)
		klu_fail("no VM of pid %d in " KLU_THIN "/vms", getpid());
	klu_thin_pick_cores(id, a, b, sizeof(a));
	stats_open(&vs, vm->vcpu_fd[0], "vCPU");
	stats_open(&ms, vm->vm_fd, "VM");
	io = stats_find(&vs, "io_exits");
	round_of(vm, ROUND1);
	v0 = stats_value(&vs, io);
	printf("# VM %d on %s: after %u echoes, io_exits = %llu\n", id, a, ROUND1,
	       (unsigned long long)v0);
	klu_check(v0 >= 2 * ROUND1, "before the moves: io_exits %llu, want at least %u",
		  (unsigned long long)v0, 2 * ROUND1);
	for (i = 0; i < 2; i++) {
		const char *to = i ? a : b;

		err = klu_thin_move(id, to);
		if (err)
			klu_fail("moving VM %d to %s: %s", id, to, strerror(err));
		round_of(vm, ROUND2);
		v = stats_value(&vs, io);
		printf("# on %s: after %u echoes, io_exits = %llu\n", to, ROUND2,
		       (unsigned long long)v);
		klu_check(v >= 2 * ROUND2 && v < 2 * ROUND1,
			  "after move %d, to %s: io_exits %llu counts the new vCPU's %u echoes (want %u to %u)",
			  i + 1, to, (unsigned long long)v, ROUND2, 2 * ROUND2, 2 * ROUND1 - 1);
	}
	again = malloc(vs.hdr.data_offset);
	klu_check(again && pread(vs.fd, again, vs.hdr.data_offset, 0) ==
		  (ssize_t)vs.hdr.data_offset && !memcmp(again, vs.head, vs.hdr.data_offset),
		  "the vCPU's header and descriptors read the same after the moves");
	stats_value(&ms, 0);
	close(vs.fd);
	close(ms.fd);
	klu_vm_destroy(vm);
	printf("%s 1 vm_stats: %d checks\n", klu_nr_failed ? "not ok" : "ok", klu_nr_checks);
	return klu_nr_failed ? KSFT_FAIL : KSFT_PASS;
}
