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
#define KLU_COUNTS_GPA		0x400u		/* struct klu_irq_counts[KLU_MAX_VCPUS] */
#define KLU_PARAMS_GPA		0x800u		/* struct klu_params */
#define KLU_STACK_TOP		0x80000u	/* per vCPU stacks grow down from here */
#define KLU_STACK_SIZE		0x4000u
#define KLU_DATA_GPA		0x100000u	/* data the host fills for the guest */

#define KLU_PORT_RESULT		0xe0	/* outl: one result word, in order */
#define KLU_PORT_DONE		0xe4	/* outl: guest finished, value = status */
#define KLU_PORT_PROGRESS	0xe8	/* outl: a progress tick (forces an exit) */
#define KLU_PORT_ECHO		0xec	/* inl: host answers with the last value written */
#define KLU_PORT_COMMAND	0xf0	/* inl: the host's next command (KLU_MODE_DIRTY) */
#define KLU_MMIO_ECHO		0xd0000000u	/* the same as MMIO: no memory slot there */
#define KLU_DIRTY_GPA		0x10000000u	/* KLU_MODE_DIRTY's memory slot */

#define KLU_MODE_COMPUTE	1	/* FNV-1a over the data, then a prime sieve */
#define KLU_MODE_EXITS		2	/* iterations echo round trips, nothing else */
#define KLU_MODE_IRQ		3	/* LAPIC timer ticks, an IPI ring, irqfd MSIs */
#define KLU_MODE_SPIN		4	/* no exit until stop: vCPU 0 counts, the rest halt */
#define KLU_MODE_DIRTY		5	/* writes pages at KLU_DIRTY_GPA as commanded */

/*
 * KLU_MODE_DIRTY's commands, read from KLU_PORT_COMMAND: the operation in the top 4
 * bits, a page of the slot at KLU_DIRTY_GPA in the low 16.
 *   WRITE  store the command word at the start of the page;
 *   INS    one insl from KLU_PORT_ECHO to the start of the page (KVM writes it
 *          when the exit completes);
 *   WAIT   put the command word in dirty_spin, then spin until dirty_go holds it;
 *   STOP   finish (KLU_PORT_DONE).
 */
#define KLU_DIRTY_WRITE		1u
#define KLU_DIRTY_INS		2u
#define KLU_DIRTY_WAIT		3u
#define KLU_DIRTY_STOP		4u
#define KLU_DIRTY_OP(cmd)	((cmd) >> 28)
#define KLU_DIRTY_PAGE(cmd)	((cmd) & 0xffffu)

#define KLU_MAX_VCPUS		8

#define KLU_EXITS_PIO		1	/* OUT, then IN, on KLU_PORT_ECHO */
#define KLU_EXITS_MMIO		2	/* a write, then a read, of KLU_MMIO_ECHO */

/* For what one side changes while the other runs (KLU_MODE_IRQ). */
#define KLU_READ(x)		__atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define KLU_WRITE(x, val)	__atomic_store_n(&(x), (val), __ATOMIC_RELEASE)

/*
 * KLU_MODE_IRQ's vectors.  The timer's is of a higher priority class than the other
 * two: the ring IPI and the MSIs can keep one of theirs pending at every EOI (a ring of
 * two passes the IPI back before the handler's EOI), and the LAPIC delivers the
 * highest pending vector first, so a timer vector below theirs waited in the IRR for
 * as long as that lasted: a tick held up, which the test took for a lost one.
 */
#define KLU_VEC_TIMER		0x50	/* TSC-deadline LAPIC timer, every vCPU */
#define KLU_VEC_IPI		0x41	/* the IPI ring: vCPU n sends to n + 1 */
#define KLU_VEC_MSI		0x42	/* what the host signals through an irqfd, vCPU 0 */
#define KLU_VEC_SPURIOUS	0xff

/*
 * What each vCPU counts in KLU_MODE_IRQ; the host reads them while the guest runs.  The
 * 64-bit fields come first and the size is a multiple of 8, so that the 32-bit guest
 * and the 64-bit host lay it out alike.
 */
struct klu_irq_counts {
	unsigned long long deadline;	/* the armed TSC deadline, 0: none */
	unsigned long long tsc;		/* the TSC at the last interrupt */
	unsigned int ticks;		/* timer interrupts */
	unsigned int early;		/* ... more than half a period early (doubled) */
	unsigned int unarmed;		/* ... that came with no deadline armed (doubled) */
	unsigned int ipi_sent;
	unsigned int ipi_recv;
	unsigned int msi;		/* irqfd interrupts */
	unsigned int other;		/* any other vector: spurious or unexpected */
	unsigned int ready;		/* the vCPU's LAPIC and IDT are set up */
	unsigned int finished;		/* the vCPU saw stop and its ring IPIs settled */
	unsigned int pad;
};

struct klu_params {
	unsigned int mode;
	unsigned int data_len;		/* bytes at KLU_DATA_GPA */
	unsigned int iterations;
	unsigned int exits;		/* KLU_MODE_EXITS: KLU_EXITS_PIO and/or _MMIO */
	unsigned int sieve_limit;	/* sieve scratch lives after the data */
	/* KLU_MODE_IRQ */
	unsigned int nr_vcpus;
	unsigned int tick_tsc;		/* TSC cycles between timer deadlines */
	unsigned int ring_go;		/* every vCPU is ready: start the IPI ring */
	unsigned int stop;		/* the host says: finish */
	/* KLU_MODE_DIRTY */
	unsigned int dirty_spin;	/* the WAIT the guest spins in */
	unsigned int dirty_go;		/* the WAIT it may leave */
};

#endif
