// SPDX-License-Identifier: GPL-2.0
/*
 * vm_irq: interrupts that must be neither lost nor doubled, for as long as the test
 * runs (and whatever happens to the VM meanwhile, such as live moves).  The VM has an
 * in-kernel irqchip and N vCPUs (-c, default 4); each of them at once
 *   - takes TSC-deadline LAPIC timer ticks (-p ms apart), re-arming one period after the
 *     previous deadline: a lost tick stops that vCPU's timer for good, a doubled one comes
 *     unarmed or more than half a period early;
 *   - passes one IPI around a ring (vCPU n to n + 1): a lost IPI stops the ring, a
 *     doubled one leaves more received than sent;
 * and vCPU 0 takes MSIs that this program signals through an irqfd, one at a time: each
 * must be counted by the guest before the next is signalled, and no more.
 * The host watches the guest's counters for -s seconds (default 10), or with -u FILE
 * until FILE exists, and fails as soon as a timer, the ring or an MSI makes no progress
 * for 5 s.
 *
 * With -e PCI_DEVICE (or -e auto, the first one), the MSIs come from QEMU's edu device
 * (1234:11e8) through stock vfio-pci (it binds the device to vfio-pci unless it is
 * bound already): the device's MSI signals the irqfd's eventfd, and for each MSI this
 * program writes edu's raise register, and acknowledges it once the guest has counted
 * it.  At the end the host's count of the device's interrupt (its vfio-msi[0] line in
 * /proc/interrupts) must have grown by at least the number raised.  Skips without an
 * edu device, an IOMMU group for it, VFIO or vfio-pci.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "klu_edu.h"
#include "klu_thin.h"
#include "klu_vm.h"

#define STALL_NS	5000000000ull
#define MSI_GSI		24

/* -e: the source of the MSIs; device -1 without. */
static struct klu_edu edu = KLU_EDU_INIT(NULL, NULL);
static int64_t edu_host_start;		/* the host's count of its MSI before the first */

struct vcpu_run {
	struct klu_vm *vm;
	int vcpu;
	int done;			/* KLU_READ/KLU_WRITE */
	struct klu_result res;
};

static void *vcpu_thread(void *arg)
{
	struct vcpu_run *r = arg;

	klu_vcpu_run_to_done(r->vm, r->vcpu, &r->res);
	KLU_WRITE(r->done, 1);
	return NULL;
}

/* -e: edu through vfio-pci, opened as a VMM does; its MSI is enabled later. */
static void edu_open(const char *want)
{
	int group;

	klu_edu_find(&edu, strcmp(want, "auto") ? want : NULL);
	group = klu_edu_bind(&edu, "vfio-pci");
	klu_edu_open(&edu, group, 0);
	printf("# edu %s through vfio-pci (IOMMU group %d) raises the MSIs\n", edu.pci, group);
}

/* The device's MSI signals @efd, the irqfd's. */
static void edu_msi_enable(int efd)
{
	uint32_t status = klu_edu_rd(&edu, EDU_IRQ_STATUS);

	if (status)	/* left by an earlier user: not ours to count */
		klu_edu_wr(&edu, EDU_IRQ_ACK, status);
	klu_edu_msi_enable(&edu, efd);
	edu_host_start = klu_edu_host_msi_count(edu.pci);
	if (edu_host_start < 0)
		klu_fail("no vfio-msi[0](%s) line in /proc/interrupts with its MSI enabled",
			 edu.pci);
}

/*
 * MSI number @n: with -e, acknowledge edu's previous one, which the guest has counted,
 * and raise the next; else a write of the eventfd.
 */
static void signal_msi(int efd, uint32_t n)
{
	uint64_t one = 1;

	if (edu.device >= 0) {
		if (n)
			klu_edu_wr(&edu, EDU_IRQ_ACK, EDU_STATUS_RAISE);
		klu_edu_wr(&edu, EDU_IRQ_RAISE, EDU_STATUS_RAISE);
	} else if (write(efd, &one, sizeof(one)) != sizeof(one)) {
		klu_fail("eventfd write: %s", strerror(errno));
	}
}

/* -e, an MSI that did not come: did the host take it? */
static void edu_stall(void)
{
	if (edu.device >= 0)
		printf("# edu: status 0x%x; host vfio-msi[0] count %lld, %lld at the start\n",
		       klu_edu_rd(&edu, EDU_IRQ_STATUS),
		       (long long)klu_edu_host_msi_count(edu.pci), (long long)edu_host_start);
}

static void check_vcpus(struct vcpu_run *runs, unsigned int nr)
{
	unsigned int v, st;

	for (v = 0; v < nr; v++) {
		if (!KLU_READ(runs[v].done))
			continue;
		st = runs[v].res.done_status;
		klu_fail("vCPU %u stopped early (status 0x%x%s)", v, st,
			 st == 0xdead ? ": an exception in the guest" : "");
	}
}

static void print_counts(struct klu_irq_counts *counts, unsigned int nr)
{
	unsigned int v;

	for (v = 0; v < nr; v++) {
		struct klu_irq_counts *c = &counts[v];

		printf("# vCPU %u: %u ticks (%u early, %u unarmed), IPIs %u sent %u received, ",
		       v, KLU_READ(c->ticks), KLU_READ(c->early), KLU_READ(c->unarmed),
		       KLU_READ(c->ipi_sent), KLU_READ(c->ipi_recv));
		printf("%u MSIs, %u other, finished %u\n", KLU_READ(c->msi), KLU_READ(c->other),
		       KLU_READ(c->finished));
		printf("#   deadline armed %llu, TSC at the last interrupt %llu\n",
		       KLU_READ(c->deadline), KLU_READ(c->tsc));
	}
}

/*
 * The guest's counters, and what KVM holds of each vCPU's interrupt state (LAPIC, TSC
 * deadline, events, MP state): what a stall is diagnosed from.
 */
static void print_stall(struct klu_vm *vm, struct klu_irq_counts *counts,
			pthread_t *threads, unsigned int nr)
{
	unsigned int v;

	print_counts(counts, nr);
	for (v = 0; v < nr; v++) {
		if (klu_vcpu_hold(vm, v, threads[v]))
			klu_vcpu_dump(vm, v);
		else
			printf("#   vCPU %u did not leave KVM_RUN within 2 s\n", v);
		klu_vcpu_release(vm, v);
	}
}

/* kvm_thin's irqbypass file says the host's interrupt remapping does not post. */
static bool host_posts_nothing(void)
{
	char line[512];

	return klu_read_line("/sys/kernel/kvm_thin/irqbypass", line, sizeof(line)) &&
	       strstr(line, " posting=no");
}

int main(int argc, char **argv)
{
	unsigned int nr_vcpus = 4, seconds = 10, period_ms = 10, v;
	struct klu_irq_counts *counts;
	uint64_t start, now, last_msi, last_ring, last_tick[KLU_MAX_VCPUS];
	uint32_t ring = 0, ticks[KLU_MAX_VCPUS] = { 0 }, injected = 0;
	struct vcpu_run runs[KLU_MAX_VCPUS];
	pthread_t threads[KLU_MAX_VCPUS];
	uint64_t sent = 0, recv = 0, elapsed_ms, want;
	const char *edu_want = NULL, *stop_file = NULL;
	struct klu_params *p;
	struct klu_vm *vm;
	long khz;
	int opt, efd;

	while ((opt = getopt(argc, argv, "c:e:p:s:u:")) != -1) {
		switch (opt) {
		case 'c':
			nr_vcpus = strtoul(optarg, NULL, 0);
			if (nr_vcpus < 1 || nr_vcpus > KLU_MAX_VCPUS) {
				fprintf(stderr, "-c takes 1 to %d vCPUs\n", KLU_MAX_VCPUS);
				return KSFT_FAIL;
			}
			break;
		case 'e':
			edu_want = optarg;
			break;
		case 'p':
			period_ms = strtoul(optarg, NULL, 0);
			break;
		case 's':
			seconds = strtoul(optarg, NULL, 0);
			break;
		case 'u':
			stop_file = optarg;
			break;
		default:
			fprintf(stderr, "usage: %s %s\n", argv[0],
				"[-c vCPUs] [-e PCI device|auto] [-p timer period ms] [-s seconds | -u stop file]");
			return KSFT_FAIL;
		}
	}
	if (!period_ms)
		period_ms = 1;

	printf("TAP version 13\n1..1\n");
	fflush(stdout);
	if (edu_want)
		edu_open(edu_want);
	vm = klu_vm_new(KLU_DATA_GPA, nr_vcpus, KLU_VM_IRQCHIP);
	if (!klu_vm_has_cpuid(vm, 1, 'c', 24))
		klu_skip("KVM offers no TSC-deadline LAPIC timer (CPUID.1:ECX[24])");
	khz = ioctl(vm->vcpu_fd[0], KVM_GET_TSC_KHZ, 0);
	if (khz <= 0)
		klu_fail("KVM_GET_TSC_KHZ: %s", strerror(errno));
	efd = klu_vm_msi_irqfd(vm, MSI_GSI, KLU_VEC_MSI);
	if (edu_want)
		edu_msi_enable(efd);
	counts = (struct klu_irq_counts *)(vm->mem + KLU_COUNTS_GPA);
	p = klu_vm_params(vm);
	*p = (struct klu_params) {
		.mode = KLU_MODE_IRQ,
		.nr_vcpus = nr_vcpus,
		.tick_tsc = khz * period_ms,
	};

	/*
	 * vCPU 0 first: it fills the IDT.  Then the others.  Then the IPI ring, and the
	 * MSIs: an interrupt to a LAPIC the guest has not enabled yet would be dropped.
	 */
	for (v = 0; v < nr_vcpus; v++) {
		runs[v] = (struct vcpu_run){ .vm = vm, .vcpu = v };
		if (pthread_create(&threads[v], NULL, vcpu_thread, &runs[v]))
			klu_fail("cannot start the thread of vCPU %u", v);
		start = klu_now_ns();
		while (!KLU_READ(counts[v].ready)) {
			check_vcpus(runs, v + 1);
			if (klu_now_ns() - start > STALL_NS)
				klu_fail("vCPU %u did not set up its LAPIC in 5 s", v);
			usleep(1000);
		}
	}
	KLU_WRITE(p->ring_go, 1);
	start = klu_now_ns();
	last_msi = start;
	last_ring = start;
	for (v = 0; v < nr_vcpus; v++)
		last_tick[v] = start;

	/* One MSI in flight at a time; every 1 ms, the timers and the ring. */
	while (klu_go_on(stop_file, start, seconds)) {
		uint64_t r = 0;

		now = klu_now_ns();
		check_vcpus(runs, nr_vcpus);
		if (KLU_READ(counts[0].msi) > injected)
			klu_fail("the guest took %u irqfd interrupts, %u were signalled",
				 KLU_READ(counts[0].msi), injected);
		if (KLU_READ(counts[0].msi) == injected) {
			signal_msi(efd, injected);
			injected++;
			last_msi = now;
		} else if (now - last_msi > STALL_NS) {
			print_stall(vm, counts, threads, nr_vcpus);
			edu_stall();
			klu_fail("irqfd interrupt %u did not reach the guest in 5 s: lost",
				 injected);
		}
		for (v = 0; v < nr_vcpus; v++) {
			if (KLU_READ(counts[v].ticks) != ticks[v]) {
				ticks[v] = KLU_READ(counts[v].ticks);
				last_tick[v] = now;
			} else if (now - last_tick[v] > STALL_NS) {
				print_stall(vm, counts, threads, nr_vcpus);
				klu_fail("vCPU %u: no timer tick for 5 s after tick %u: lost", v,
					 ticks[v]);
			}
			r += KLU_READ(counts[v].ipi_recv);
		}
		if (r != ring) {
			ring = r;
			last_ring = now;
		} else if (nr_vcpus > 1 && now - last_ring > STALL_NS) {
			print_stall(vm, counts, threads, nr_vcpus);
			klu_fail("the IPI ring made no progress for 5 s after %u IPIs: lost",
				 ring);
		}
		usleep(1000);
	}

	/* The last MSI must have come in before the guest is told to finish. */
	while (KLU_READ(counts[0].msi) != injected) {
		check_vcpus(runs, nr_vcpus);
		if (klu_now_ns() - last_msi > STALL_NS) {
			edu_stall();
			klu_fail("irqfd interrupt %u did not reach the guest in 5 s: lost",
				 injected);
		}
		usleep(1000);
	}
	if (edu.device >= 0 && injected)
		klu_edu_wr(&edu, EDU_IRQ_ACK, EDU_STATUS_RAISE);
	KLU_WRITE(p->stop, 1);
	/* Each vCPU waits for the others and for two more ticks, then reports. */
	now = klu_now_ns();
	for (v = 0; v < nr_vcpus; v++) {
		while (!KLU_READ(runs[v].done)) {
			if (klu_now_ns() - now > STALL_NS) {
				print_counts(counts, nr_vcpus);
				klu_fail("vCPU %u did not finish within 5 s of the stop", v);
			}
			usleep(1000);
		}
	}
	for (v = 0; v < nr_vcpus; v++) {
		pthread_join(threads[v], NULL);
		if (runs[v].res.done_status || runs[v].res.nr_words != 1)
			klu_fail("vCPU %u ended with status 0x%x and %d results", v,
				 runs[v].res.done_status, runs[v].res.nr_words);
	}
	elapsed_ms = (klu_now_ns() - start) / 1000000;
	want = elapsed_ms / period_ms;
	print_counts(counts, nr_vcpus);
	for (v = 0; v < nr_vcpus; v++) {
		struct klu_irq_counts *c = &counts[v];

		if (c->early || c->unarmed)
			klu_fail("vCPU %u: %u timer ticks half a period early, %u unarmed",
				 v, c->early, c->unarmed);
		if (c->other)
			klu_fail("vCPU %u: %u interrupts on vectors nobody sent", v, c->other);
		/* Deadlines follow the guest's TSC: a jump of it shows up here. */
		if (c->ticks < want / 2 || c->ticks > want + want / 10 + 5)
			klu_fail("vCPU %u: %u timer ticks in %llu ms of %u ms, want about %llu", v,
				 c->ticks, (unsigned long long)elapsed_ms, period_ms,
				 (unsigned long long)want);
		if (runs[v].res.words[0] != c->ticks)
			klu_fail("vCPU %u reported %u ticks, counted %u", v, runs[v].res.words[0],
				 c->ticks);
		sent += c->ipi_sent;
		recv += c->ipi_recv;
	}
	if (sent != recv)
		klu_fail("IPIs: %llu sent, %llu received", (unsigned long long)sent,
			 (unsigned long long)recv);
	if (nr_vcpus > 1 && !recv)
		klu_fail("no IPI went around the ring");
	if (KLU_READ(counts[0].msi) != injected)
		klu_fail("irqfd: %u signalled, the guest took %u", injected,
			 KLU_READ(counts[0].msi));
	printf("# %u vCPUs, %llu ms: timer ticks every %u ms, %llu ring IPIs, %u irqfd MSIs\n",
	       nr_vcpus, (unsigned long long)elapsed_ms, period_ms, (unsigned long long)recv,
	       injected);
	if (edu.device >= 0) {
		long long host = klu_edu_host_msi_count(edu.pci), grew = host - edu_host_start;

		printf("# edu %s: %u MSIs raised, the guest took %u\n", edu.pci, injected,
		       KLU_READ(counts[0].msi));
		printf("# host vfio-msi[0] count %lld -> %lld (+%lld)\n",
		       (long long)edu_host_start, host, grew);
		/*
		 * A host that posts the device's interrupts to the vCPU does not count them:
		 * checked only where kvm_thin says nothing posts (posting=no).
		 */
		if (!host_posts_nothing())
			printf("# the host count is not checked: interrupts may be posted here\n");
		else if (grew < injected)
			klu_fail("edu raised %u MSIs, the host's vfio-msi[0] count grew by %lld",
				 injected, grew);
		klu_edu_close(&edu);	/* vfio-pci disables the MSI */
		printf("ok 1 - no timer tick, IPI or edu MSI (vfio-pci, irqfd) lost or doubled\n");
	} else {
		printf("ok 1 - no timer tick, IPI or irqfd interrupt lost or doubled\n");
	}
	close(efd);
	klu_vm_destroy(vm);
	return KSFT_PASS;
}
