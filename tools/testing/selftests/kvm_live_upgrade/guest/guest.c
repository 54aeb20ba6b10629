// SPDX-License-Identifier: GPL-2.0
/*
 * Guest programs for the kvm_live_upgrade selftests.  Each one computes something the
 * host can check independently, and reports it through KLU_PORT_RESULT.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include "guest.h"

void guest_main(unsigned int vcpu);
void guest_irq(unsigned int vector);

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

/* ---- KLU_MODE_IRQ ------------------------------------------------------------------ */

#define APIC_BASE		0xfee00000u
#define APIC_ID			0x20
#define APIC_EOI		0xb0
#define APIC_SVR		0xf0
#define APIC_ICR_LO		0x300
#define APIC_ICR_HI		0x310
#define APIC_LVTT		0x320
#define APIC_LVTT_TSC_DEADLINE	(2u << 17)
#define MSR_TSC_DEADLINE	0x6e0

struct gate {
	unsigned short off_lo, sel;
	unsigned char zero, type;
	unsigned short off_hi;
} __attribute__((packed));

struct table_ptr {
	unsigned short limit;
	unsigned int base;
} __attribute__((packed));

/* Flat 32-bit code and data, the selectors the host loaded (0x8 and 0x10). */
static const unsigned long long gdt[3] = {
	0, 0x00cf9a000000ffffull, 0x00cf92000000ffffull,
};

static struct gate idt[256];

extern char klu_isr_0x50[], klu_isr_0x41[], klu_isr_0x42[], klu_isr_0xff[];
extern char klu_isr_other[], klu_isr_fault[];

/* Per vCPU: the armed deadline (0: none), and the tick after which the timer stops. */
static unsigned long long deadline[KLU_MAX_VCPUS];
static unsigned int last_tick[KLU_MAX_VCPUS];
static unsigned int finished;

/* LAPIC registers: one 32-bit access each, which the compiler must not merge or drop. */
static inline void apic_write(unsigned int reg, unsigned int val)
{
	guest_mmio_write(APIC_BASE + reg, val);
}

static inline unsigned int apic_read(unsigned int reg)
{
	return guest_mmio_read(APIC_BASE + reg);
}

static inline unsigned long long rdtsc(void)
{
	unsigned long long t;

	asm volatile("rdtsc" : "=A"(t));
	return t;
}

static inline void wrmsr(unsigned int msr, unsigned long long val)
{
	asm volatile("wrmsr" : : "c"(msr), "a"((unsigned int)val),
		     "d"((unsigned int)(val >> 32)));
}

static struct klu_irq_counts *counts(unsigned int vcpu)
{
	return (struct klu_irq_counts *)KLU_COUNTS_GPA + vcpu;
}

static void set_gate(unsigned int vector, char *handler)
{
	unsigned int off = (unsigned int)handler;

	idt[vector] = (struct gate) {
		.off_lo = off & 0xffff, .sel = 0x8, .type = 0x8e, .off_hi = off >> 16,
	};
}

static void send_ipi(unsigned int apic_id, unsigned int vector)
{
	apic_write(APIC_ICR_HI, apic_id << 24);
	apic_write(APIC_ICR_LO, vector);	/* fixed, physical, edge */
}

static void arm_timer(unsigned int vcpu, unsigned long long when)
{
	deadline[vcpu] = when;
	counts(vcpu)->deadline = when;
	wrmsr(MSR_TSC_DEADLINE, when);
}

/*
 * Every interrupt.  A timer tick re-arms the deadline one period after the last one (not
 * after now: a tick late by a move is followed at once by the ones it held up), so a
 * lost tick stops this vCPU's timer for good and a doubled one comes unarmed or early.
 */
void guest_irq(unsigned int vector)
{
	unsigned int me = apic_read(APIC_ID) >> 24;
	struct klu_irq_counts *c = counts(me);
	struct klu_params *p = params();

	c->tsc = rdtsc();
	switch (vector) {
	case KLU_VEC_TIMER:
		/*
		 * A doubled tick comes right after the re-arm, most of a period early; a
		 * tick a little early is the emulated host's TSC catching up.
		 */
		if (!deadline[me])
			c->unarmed++;
		else if (rdtsc() + p->tick_tsc / 2 < deadline[me])
			c->early++;
		c->ticks++;
		if (deadline[me] && c->ticks < last_tick[me])
			arm_timer(me, deadline[me] + p->tick_tsc);
		else
			arm_timer(me, 0);
		break;
	case KLU_VEC_IPI:
		c->ipi_recv++;
		if (!KLU_READ(p->stop)) {
			c->ipi_sent++;
			send_ipi((me + 1) % p->nr_vcpus, KLU_VEC_IPI);
		}
		break;
	case KLU_VEC_MSI:
		c->msi++;
		break;
	case KLU_VEC_SPURIOUS:
		c->other++;
		return;		/* no EOI for the spurious vector */
	default:
		c->other++;
		break;
	}
	apic_write(APIC_EOI, 0);
}

/* Halt until an interrupt, unless @done: the sti shadow closes the race. */
static void wait_irq(unsigned int *flag, unsigned int until)
{
	asm volatile("cli");
	while (KLU_READ(*flag) < until)
		asm volatile("sti; hlt; cli" : : : "memory");
	asm volatile("sti");
}

static void irq_main(unsigned int me)
{
	struct klu_params *p = params();
	struct klu_irq_counts *c = counts(me);
	struct table_ptr gdtr = { sizeof(gdt) - 1, (unsigned int)gdt };
	struct table_ptr idtr = { sizeof(idt) - 1, (unsigned int)idt };
	unsigned int v;

	/*
	 * vCPU 0 fills the IDT that all share: the host starts the others once it is ready.
	 * (Each filling it would briefly point a vector another vCPU already takes at the
	 * wrong handler.)
	 */
	if (me == 0) {
		for (v = 0; v < 32; v++)
			set_gate(v, klu_isr_fault);
		for (v = 32; v < 256; v++)
			set_gate(v, klu_isr_other);
		set_gate(KLU_VEC_TIMER, klu_isr_0x50);
		set_gate(KLU_VEC_IPI, klu_isr_0x41);
		set_gate(KLU_VEC_MSI, klu_isr_0x42);
		set_gate(KLU_VEC_SPURIOUS, klu_isr_0xff);
	}
	asm volatile("lgdt %0; lidt %1" : : "m"(gdtr), "m"(idtr));

	apic_write(APIC_SVR, 0x100 | KLU_VEC_SPURIOUS);
	apic_write(APIC_LVTT, APIC_LVTT_TSC_DEADLINE | KLU_VEC_TIMER);
	last_tick[me] = ~0u;
	arm_timer(me, rdtsc() + p->tick_tsc);
	KLU_WRITE(c->ready, 1);
	/*
	 * The host says when every LAPIC is on (one that is off drops an IPI): vCPU 0
	 * then starts the ring.
	 */
	asm volatile("cli");
	while (!KLU_READ(p->stop)) {
		if (me == 0 && p->nr_vcpus > 1 && KLU_READ(p->ring_go) && !c->ipi_sent) {
			c->ipi_sent++;
			send_ipi(1, KLU_VEC_IPI);
		}
		asm volatile("sti; hlt; cli" : : : "memory");
	}
	asm volatile("sti");

	/*
	 * Stop: no vCPU forwards the ring's IPI any more.  Once all have seen it, every IPI
	 * sent is pending at its target; two more timer ticks let each one come in.
	 */
	asm volatile("lock incl %0" : "+m"(finished));
	wait_irq(&finished, p->nr_vcpus);
	asm volatile("cli");
	last_tick[me] = c->ticks + 2;
	asm volatile("sti");
	wait_irq(&c->ticks, last_tick[me]);
	KLU_WRITE(c->finished, 1);
	guest_outl(KLU_PORT_RESULT, c->ticks);
}

/* ---- KLU_MODE_DIRTY ---------------------------------------------------------------- */

static void dirty_main(void)
{
	struct klu_params *p = params();
	unsigned int cmd, *dst;

	for (;;) {
		cmd = guest_inl(KLU_PORT_COMMAND);
		dst = (unsigned int *)(KLU_DIRTY_GPA + KLU_DIRTY_PAGE(cmd) * 4096u);
		switch (KLU_DIRTY_OP(cmd)) {
		case KLU_DIRTY_WRITE:
			KLU_WRITE(*dst, cmd);
			break;
		case KLU_DIRTY_INS:
			asm volatile("cld; insl" : "+D"(dst) : "d"(KLU_PORT_ECHO) : "memory");
			break;
		case KLU_DIRTY_WAIT:
			KLU_WRITE(p->dirty_spin, cmd);
			while (KLU_READ(p->dirty_go) != cmd)
				asm volatile("pause");
			break;
		default:
			return;
		}
	}
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
			if (p->exits & KLU_EXITS_PIO) {
				guest_outl(KLU_PORT_ECHO, i);
				sum += guest_inl(KLU_PORT_ECHO);
			}
			if (p->exits & KLU_EXITS_MMIO) {
				guest_mmio_write(KLU_MMIO_ECHO, i);
				sum += guest_mmio_read(KLU_MMIO_ECHO);
			}
		}
		guest_outl(KLU_PORT_RESULT, sum);
		break;
	case KLU_MODE_IRQ:
		irq_main(vcpu);
		break;
	case KLU_MODE_SPIN:
		/*
		 * Nothing leaves KVM_RUN: vCPU 0 counts in its ticks until the host says
		 * stop, and the others halt with interrupts off, until the VM ends.
		 */
		if (vcpu)
			for (;;)
				asm volatile("cli; hlt" : : : "memory");
		while (!KLU_READ(p->stop))
			KLU_WRITE(counts(0)->ticks, counts(0)->ticks + 1);
		guest_outl(KLU_PORT_RESULT, counts(0)->ticks);
		break;
	case KLU_MODE_DIRTY:
		dirty_main();
		break;
	}
	guest_outl(KLU_PORT_DONE, 0);
}
