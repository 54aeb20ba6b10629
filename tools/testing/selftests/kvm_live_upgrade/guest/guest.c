// SPDX-License-Identifier: GPL-2.0
/*
 * Guest programs for the kvm_live_upgrade selftests.  Each one computes something the
 * host can check independently, and reports it through KLU_PORT_RESULT.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include "guest.h"

void guest_main(unsigned int vcpu);

static unsigned int fnv1a(const unsigned char *p, unsigned int len)
{
	unsigned int h = 2166136261u;
	unsigned int i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u;
		if ((i & 0xfffff) == 0xfffff)
			guest_outl(KLU_PORT_PROGRESS, i);
	}
	return h;
}

static unsigned int count_primes(unsigned char *sieve, unsigned int limit)
{
	unsigned int i, j, n = 0;

	for (i = 0; i < limit; i++)
		sieve[i] = i >= 2;
	for (i = 2; i * i < limit; i++) {
		if (!sieve[i])
			continue;
		for (j = i * i; j < limit; j += i)
			sieve[j] = 0;
	}
	for (i = 0; i < limit; i++)
		n += sieve[i];
	return n;
}

void guest_main(unsigned int vcpu)
{
	struct klu_params *p = params();
	unsigned char *data = (unsigned char *)KLU_DATA_GPA;
	unsigned int i, sum = 0;

	switch (p->mode) {
	case KLU_MODE_COMPUTE:
		guest_outl(KLU_PORT_RESULT, fnv1a(data, p->data_len));
		/* Each vCPU sieves in its own scratch; they all hash the same data. */
		guest_outl(KLU_PORT_RESULT, count_primes(data + p->data_len +
							 vcpu * p->sieve_limit,
							 p->sieve_limit));
		break;
	case KLU_MODE_EXITS:
		for (i = 0; i < p->iterations; i++) {
			guest_outl(KLU_PORT_ECHO, i);
			sum += guest_inl(KLU_PORT_ECHO);
		}
		guest_outl(KLU_PORT_RESULT, sum);
		break;
	}
	guest_outl(KLU_PORT_DONE, 0);
}
