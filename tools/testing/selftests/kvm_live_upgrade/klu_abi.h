/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the host side and the guest side of the kvm_live_upgrade selftests agree on:
 * the guest-physical layout and the I/O ports.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KLU_ABI_H
#define KLU_ABI_H

#define KLU_CODE_GPA		0x1000u		/* guest image, entry point first */
#define KLU_PARAMS_GPA		0x800u		/* struct klu_params */
#define KLU_STACK_TOP		0x80000u	/* per vCPU stacks grow down from here */
#define KLU_STACK_SIZE		0x4000u
#define KLU_DATA_GPA		0x100000u	/* data the host fills for the guest */

#define KLU_PORT_RESULT		0xe0	/* outl: one result word, in order */
#define KLU_PORT_DONE		0xe4	/* outl: guest finished, value = status */
#define KLU_PORT_PROGRESS	0xe8	/* outl: a progress tick (forces an exit) */
#define KLU_PORT_ECHO		0xec	/* inl: host answers with the last value written */

#define KLU_MODE_COMPUTE	1	/* FNV-1a over the data, then a prime sieve */
#define KLU_MODE_EXITS		2	/* iterations port I/O exits, nothing else */

struct klu_params {
	unsigned int mode;
	unsigned int data_len;		/* bytes at KLU_DATA_GPA */
	unsigned int iterations;
	unsigned int sieve_limit;	/* sieve scratch lives after the data */
};

#endif
