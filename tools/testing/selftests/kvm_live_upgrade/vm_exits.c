// SPDX-License-Identifier: GPL-2.0
/*
 * vm_exits N [SECONDS [pio|mmio|both]]: a guest does N round trips on an echo the VMM
 * answers: port I/O (OUT then IN, the default), MMIO (a write then a read where no
 * memory slot is, KVM_EXIT_MMIO), or both; the host checks the guest's sum and prints
 * the mean cost of one exit.  The port-I/O figure is the per-exit overhead: run it on
 * the stock modules and on a core, in the same bed.  With SECONDS it repeats until
 * that many seconds have passed.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "klu_vm.h"

int main(int argc, char **argv)
{
	uint32_t iterations = argc > 1 ? strtoul(argv[1], NULL, 0) : 20000;
	unsigned int seconds = argc > 2 ? strtoul(argv[2], NULL, 0) : 0, rounds = 0;
	const char *kind = argc > 3 ? argv[3] : "pio";
	uint32_t exits_kind;
	struct klu_result res;
	uint64_t t, exits = 0;
	struct klu_vm *vm;
	uint32_t expect;

	if (!strcmp(kind, "pio")) {
		exits_kind = KLU_EXITS_PIO;
	} else if (!strcmp(kind, "mmio")) {
		exits_kind = KLU_EXITS_MMIO;
	} else if (!strcmp(kind, "both")) {
		exits_kind = KLU_EXITS_PIO | KLU_EXITS_MMIO;
	} else {
		fprintf(stderr, "usage: %s [N [seconds [pio|mmio|both]]]\n", argv[0]);
		return KSFT_FAIL;
	}
	printf("TAP version 13\n1..1\n");
	fflush(stdout);
	expect = (uint32_t)((uint64_t)iterations * (iterations - 1) / 2);
	if (exits_kind == (KLU_EXITS_PIO | KLU_EXITS_MMIO))
		expect *= 2;
	vm = klu_vm_create(KLU_DATA_GPA, 1);
	t = klu_now_ns();
	do {
		*klu_vm_params(vm) = (struct klu_params) {
			.mode = KLU_MODE_EXITS,
			.iterations = iterations,
			.exits = exits_kind,
		};
		if (rounds)
			klu_vcpu_restart(vm, 0);
		klu_vcpu_run_to_done(vm, 0, &res);
		if (res.nr_words != 1 || res.words[0] != expect)
			klu_fail("round %u: guest echo sum is 0x%x (%d words), want 0x%x", rounds,
				 res.words[0], res.nr_words, expect);
		exits += res.exits;
		rounds++;
	} while (klu_now_ns() - t < seconds * 1000000000ull);
	t = klu_now_ns() - t;
	printf("# rounds=%u exits=%llu ns_per_exit=%llu\n", rounds, (unsigned long long)exits,
	       (unsigned long long)(t / exits));
	printf("ok 1 - %u x %u %s round trips, echo sums checked\n", rounds, iterations,
	       kind);
	klu_vm_destroy(vm);
	return KSFT_PASS;
}
