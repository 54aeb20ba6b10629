// SPDX-License-Identifier: GPL-2.0
/*
 * vm_exits [-u STOPFILE] [N [SECONDS [pio|mmio|both]]]: a guest does N round trips on an
 * echo the VMM answers: port I/O (OUT then IN, the default), MMIO (a write then a read
 * where no memory slot is, KVM_EXIT_MMIO), or both; the host checks the guest's sum and
 * prints the mean cost of one exit.  The port-I/O figure is the per-exit overhead: run it
 * on the stock modules and on a core, in the same bed.  With SECONDS it repeats until
 * that many seconds have passed, and with -u until STOPFILE exists (a test that moves
 * the VM says when it is done with it).
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "klu_vm.h"

static int print_usage(const char *prog)
{
	fprintf(stderr, "usage: %s [-u stop file] [N [seconds [pio|mmio|both]]]\n", prog);
	return KSFT_FAIL;
}

int main(int argc, char **argv)
{
	const char *kind = "pio", *stop_file = NULL;
	unsigned int seconds = 0, rounds = 0;
	uint32_t iterations = 20000;
	uint32_t exits_kind;
	struct klu_result res;
	uint64_t t, exits = 0;
	struct klu_vm *vm;
	uint32_t expect;
	int opt;

	while ((opt = getopt(argc, argv, "+u:")) != -1) {
		if (opt != 'u')
			return print_usage(argv[0]);
		stop_file = optarg;
	}
	if (optind < argc)
		iterations = strtoul(argv[optind], NULL, 0);
	if (optind + 1 < argc)
		seconds = strtoul(argv[optind + 1], NULL, 0);
	if (optind + 2 < argc)
		kind = argv[optind + 2];
	if (!strcmp(kind, "pio"))
		exits_kind = KLU_EXITS_PIO;
	else if (!strcmp(kind, "mmio"))
		exits_kind = KLU_EXITS_MMIO;
	else if (!strcmp(kind, "both"))
		exits_kind = KLU_EXITS_PIO | KLU_EXITS_MMIO;
	else
		return print_usage(argv[0]);
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
	} while (klu_go_on(stop_file, t, seconds));
	t = klu_now_ns() - t;
	printf("# rounds=%u exits=%llu ns_per_exit=%llu\n", rounds, (unsigned long long)exits,
	       (unsigned long long)(t / exits));
	printf("ok 1 - %u x %u %s round trips, echo sums checked\n", rounds, iterations,
	       kind);
	klu_vm_destroy(vm);
	return KSFT_PASS;
}
