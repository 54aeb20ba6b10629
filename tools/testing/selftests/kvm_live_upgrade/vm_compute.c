// SPDX-License-Identifier: GPL-2.0
/*
 * vm_compute: a guest hashes memory the host filled and counts primes with a sieve;
 * the host checks both against its own computation.  With -s it repeats until that
 * many seconds have passed (with -u FILE, until FILE exists), re-seeding the data each
 * round, so a core that corrupts guest state at any time (wrong VMCS, wrong ASID, stale
 * TLB) is caught.  With -c N
 * the VM has N vCPUs, each run by a thread of its own, each computing both results
 * (with a sieve of its own), and the host checks every vCPU's.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "klu_vm.h"

static uint32_t xorshift32(uint32_t *s)
{
	uint32_t x = *s;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

static uint32_t host_fnv1a(const uint8_t *p, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

/* Trial division: deliberately not the guest's algorithm. */
static uint32_t host_primes(uint32_t limit)
{
	uint32_t n, d, count = 0;

	for (n = 2; n < limit; n++) {
		for (d = 2; d * d <= n; d++)
			if (n % d == 0)
				break;
		count += d * d > n;
	}
	return count;
}

struct vcpu_run {
	struct klu_vm *vm;
	int vcpu;
	struct klu_result res;
};

static void *vcpu_thread(void *arg)
{
	struct vcpu_run *r = arg;

	klu_vcpu_run_to_done(r->vm, r->vcpu, &r->res);
	return NULL;
}

int main(int argc, char **argv)
{
	uint32_t data_len = 4 << 20, sieve = 100000, seed = 0x2545f491, expect_primes;
	unsigned int seconds = 0, rounds = 0, nr_vcpus = 1;
	const char *stop_file = NULL;
	struct vcpu_run runs[8];
	uint64_t exits = 0;
	struct klu_vm *vm;
	uint64_t start;
	int opt;

	while ((opt = getopt(argc, argv, "c:m:p:s:u:")) != -1) {
		switch (opt) {
		case 'c':
			nr_vcpus = strtoul(optarg, NULL, 0);
			if (nr_vcpus < 1 || nr_vcpus > 8) {
				fprintf(stderr, "-c takes 1 to 8 vCPUs\n");
				return KSFT_FAIL;
			}
			break;
		case 'm':
			data_len = strtoul(optarg, NULL, 0) << 20;
			break;
		case 'p':
			sieve = strtoul(optarg, NULL, 0);
			break;
		case 's':
			seconds = strtoul(optarg, NULL, 0);
			break;
		case 'u':
			stop_file = optarg;
			break;
		default:
			fprintf(stderr, "usage: %s %s\n", argv[0],
				"[-c vCPUs] [-m data MiB] [-p sieve limit] [-s seconds | -u stop file]");
			return KSFT_FAIL;
		}
	}

	printf("TAP version 13\n1..1\n");
	fflush(stdout);
	expect_primes = host_primes(sieve);
	vm = klu_vm_create(KLU_DATA_GPA + data_len + nr_vcpus * sieve + (1 << 20), nr_vcpus);
	start = klu_now_ns();
	do {
		struct klu_params *p = klu_vm_params(vm);
		pthread_t threads[8];
		uint32_t i, expect_hash;
		unsigned int v;

		for (i = 0; i < data_len / 4; i++)
			((uint32_t *)(vm->mem + KLU_DATA_GPA))[i] = xorshift32(&seed);
		expect_hash = host_fnv1a(vm->mem + KLU_DATA_GPA, data_len);
		*p = (struct klu_params) {
			.mode = KLU_MODE_COMPUTE,
			.data_len = data_len,
			.sieve_limit = sieve,
		};
		for (v = 0; v < nr_vcpus; v++) {
			runs[v] = (struct vcpu_run){ .vm = vm, .vcpu = v };
			if (rounds)	/* start the guest over */
				klu_vcpu_restart(vm, v);
			if (pthread_create(&threads[v], NULL, vcpu_thread, &runs[v]))
				klu_fail("cannot start the thread of vCPU %u", v);
		}
		for (v = 0; v < nr_vcpus; v++) {
			struct klu_result *res = &runs[v].res;

			pthread_join(threads[v], NULL);
			exits += res->exits;
			if (res->nr_words != 2)
				klu_fail("round %u: vCPU %u reported %d results, want 2",
					 rounds, v, res->nr_words);
			if (res->words[0] != expect_hash)
				klu_fail("round %u: vCPU %u: FNV-1a 0x%08x, host: 0x%08x",
					 rounds, v, res->words[0], expect_hash);
			if (res->words[1] != expect_primes)
				klu_fail("round %u: vCPU %u: %u primes below %u, host: %u",
					 rounds, v, res->words[1], sieve, expect_primes);
		}
		rounds++;
	} while (klu_go_on(stop_file, start, seconds));

	printf("# %u rounds on %u vCPUs: FNV-1a over %u MiB and %u primes below %u,",
	       rounds, nr_vcpus, data_len >> 20, expect_primes, sieve);
	printf(" %llu exits, %.1f s\n", (unsigned long long)exits,
	       (klu_now_ns() - start) / 1e9);
	printf("ok 1 - guest computed the hash and the prime count the host expects\n");
	klu_vm_destroy(vm);
	return KSFT_PASS;
}
