/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Guest side of the kvm_live_upgrade selftests: freestanding 32-bit flat protected
 * mode code, no paging.  It talks to the host through port I/O and, in KLU_MODE_IRQ,
 * through the counters it keeps in memory the host reads.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KLU_GUEST_H
#define KLU_GUEST_H

#include "../klu_abi.h"

static inline void guest_outl(unsigned short port, unsigned int val)
{
	asm volatile("outl %0, %1" : : "a"(val), "Nd"(port));
}

static inline unsigned int guest_inl(unsigned short port)
{
	unsigned int val;

	asm volatile("inl %1, %0" : "=a"(val) : "Nd"(port));
	return val;
}

/* An MMIO access the host handles (no memory slot there): one movl each way. */
static inline void guest_mmio_write(unsigned int addr, unsigned int val)
{
	asm volatile("movl %0, %1" : : "r"(val), "m"(*(unsigned int *)addr) : "memory");
}

static inline unsigned int guest_mmio_read(unsigned int addr)
{
	unsigned int val;

	asm volatile("movl %1, %0" : "=r"(val) : "m"(*(unsigned int *)addr));
	return val;
}

static inline struct klu_params *params(void)
{
	return (struct klu_params *)KLU_PARAMS_GPA;
}

#endif
