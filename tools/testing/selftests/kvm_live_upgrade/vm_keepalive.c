// SPDX-License-Identifier: GPL-2.0
/*
 * vm_keepalive: a PCI device assigned to a VM keeps doing DMA and raising interrupts
 * while the VMM process is replaced, and the guest loses none of its interrupts and
 * sees none twice.
 *
 * QEMU's edu device (1234:11e8), bound to vfio-keepalive, is assigned to a one-vCPU
 * guest (KLU_MODE_IRQ) whose RAM is a memfd, mapped for the device at IOVA == GPA; the
 * device's MSI signals an eventfd that a KVM irqfd routes to vector KLU_VEC_MSI.
 *   Phase A, the first VMM: 5 edu interrupts and a DMA round trip (RAM -> edu -> RAM,
 *   with a completion MSI) reach the guest.  Then the VMM pauses: it takes the vCPU out
 *   of KVM_RUN, detaches the irqfd, saves the vCPU's state to a file, arms keepalive,
 *   gives up ownership, starts an edu -> RAM DMA with a completion MSI and execs itself.
 *   The exec closes every descriptor: the KVM VM is destroyed; the device, its eventfd
 *   and its IOMMU mappings live on, kept by vfio-keepalive, with nobody owning them.
 *   Phase B, the new VMM (the same pid): once the host has taken the DMA's MSI, it
 *   reclaims the device with the token, checks that the DMA landed in guest RAM and that
 *   one interrupt came while the device had no owner, re-owns the DMA mapping (VADDR),
 *   builds a new VM over the same memory, restores the vCPU and attaches a new irqfd to
 *   the same eventfd.  The guest must count the ownerless interrupt exactly once, then
 *   5 more interrupts and another DMA round trip, each exactly once, and finish cleanly.
 * Skips (exit 4) without KVM (or its irqchip, irqfd, TSC-deadline timer), without
 * vfio-keepalive, without an edu device or without an IOMMU group for it.
 *
 * Usage: vm_keepalive [-d PCI_DEVICE] [-f STATEFILE]; --resume STATEFILE is phase B.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/vfio.h>
#include <linux/vfio_keepalive.h>

#include "klu_edu.h"
#include "klu_vm.h"

#define MEM_SIZE	0x200000ul	/* guest RAM: 2 MiB of memfd */
#define MSI_GSI		24
#define TICK_MS		50		/* the guest's LAPIC timer period */
#define RAISES		5		/* interrupts raised one at a time, in each phase */
#define MSI_BEFORE	(RAISES + 1)	/* and a DMA round trip's: what phase A's guest takes */
#define MSI_TOTAL	(2 * MSI_BEFORE + 1)	/* and one while the device has no owner */
#define IRQ_NS		10000000000ull	/* the longest wait for one interrupt or DMA */
#define PHASE_NS	30000000000ull	/* for the guest to start, or to finish */
#define MIN_RUN_NS	1500000000ull	/* phase A's shortest run: see pause_and_hand_over() */
#define KEEP_MS		30000u		/* reclaim timeout */
#define STATE_FILE	"/tmp/vm_keepalive.state"

#define DMA_LEN		1024u

/* Guest-physical addresses = IOVAs of the DMA buffers, above the guest's stacks. */
#define GPA_A_SRC	0x100000u
#define GPA_A_DST	0x101000u
#define GPA_GAP_SRC	0x102000u
#define GPA_GAP_DST	0x103000u
#define GPA_B_SRC	0x104000u
#define GPA_B_DST	0x105000u
#define EDU_BUF_AB	EDU_BUF
#define EDU_BUF_GAP	(EDU_BUF + DMA_LEN)
#define SEED_A		1
#define SEED_GAP	2
#define SEED_B		3

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

/* The MSRs saved: the deadline last, since it is restored after the LAPIC. */
static const uint32_t saved_msrs[] = {
	0x10,		/* IA32_TSC */
	0x1b,		/* IA32_APIC_BASE */
	0x1a0,		/* IA32_MISC_ENABLE */
	0x277,		/* IA32_PAT */
	0x6e0,		/* IA32_TSC_DEADLINE */
};

#define NR_MSRS		ARRAY_SIZE(saved_msrs)

struct msr_list {
	struct kvm_msrs hdr;
	struct kvm_msr_entry e[NR_MSRS];
};

enum { FPU_LEGACY = 1, FPU_XSAVE };

#define STATE_MAGIC	0x6b6c756b	/* "kulk" */

/* What phase A leaves phase B: written and read by the same binary. */
struct ka_state {
	uint32_t magic;
	uint32_t size;
	uint8_t token[VFIO_KEEPALIVE_TOKEN_SIZE];
	char pci[VFIO_KEEPALIVE_NAME_SIZE];
	int32_t pid;
	uint32_t fpu_kind;
	uint32_t has_xcrs;
	uint32_t pad;
	uint64_t mem_size;
	uint64_t cpuid_hash;
	uint64_t pause_ns;		/* the vCPU left KVM_RUN */
	uint64_t dma_ns;		/* the in-flight DMA started */
	uint64_t exec_ns;
	int64_t host_irqs;		/* the device's host MSI count before it, or -1 */
	struct klu_params params;
	struct klu_irq_counts counts;	/* the guest's, at the pause */
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_msr_entry msrs[NR_MSRS];
	struct kvm_xsave xsave;		/* last: it ends in a flexible array */
};

/* The guest and the thread that runs its vCPU. */
struct guest {
	struct klu_vm *vm;
	uint8_t *mem;
	struct klu_irq_counts *c;
	struct klu_params *p;
	pthread_t thread;
	int done;			/* KLU_READ/KLU_WRITE */
	struct klu_result res;
};

static struct guest g;
static int disarm_fd = -1;		/* armed: the device file to disarm at a failure */

static void __noreturn __printf(1, 2) ka_fail(const char *fmt, ...)
{
	va_list ap;

	printf("# FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\nnot ok vm_keepalive\n");
	fflush(stdout);
	exit(KSFT_FAIL);
}

static void __noreturn __printf(1, 2) ka_skip(const char *fmt, ...)
{
	va_list ap;

	printf("ok vm_keepalive # SKIP ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(KSFT_SKIP);
}

/* The assigned device; its name goes into the state and RECLAIM's device. */
static struct klu_edu edu = KLU_EDU_INIT(ka_fail, ka_skip);
static_assert(sizeof(edu.pci) == VFIO_KEEPALIVE_NAME_SIZE, "PCI name sizes differ");

/* A failure after arming: release the device the way vfio-pci would, not in 30 s. */
static void disarm_at_exit(void)
{
	struct vfio_keepalive_disarm d = { .argsz = sizeof(d) };

	if (disarm_fd >= 0 && !ioctl(disarm_fd, VFIO_KEEPALIVE_DISARM, &d))
		printf("# at exit: keepalive disarmed\n");
	fflush(stdout);
}

static unsigned long long ms(uint64_t ns)
{
	return ns / 1000000;
}

/* ---- guest memory ------------------------------------------------------------------- */

static void pattern(uint8_t *p, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1, i;

	for (i = 0; i < DMA_LEN; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = x;
	}
}

static void check_pattern(uint32_t gpa, uint32_t seed, const char *what)
{
	uint8_t want[DMA_LEN];
	uint32_t i;

	pattern(want, seed);
	for (i = 0; i < DMA_LEN; i++)
		if (g.mem[gpa + i] != want[i])
			ka_fail("%s: guest RAM at 0x%x holds 0x%02x, want 0x%02x (%u of %u right)",
				what, gpa + i, g.mem[gpa + i], want[i], i, DMA_LEN);
}

static uint64_t cpuid_hash(const struct kvm_cpuid2 *c)
{
	const uint8_t *p = (const uint8_t *)c->entries;
	uint64_t h = 14695981039346656037ull;
	size_t i;

	for (i = 0; i < c->nent * sizeof(c->entries[0]); i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h ^ c->nent;
}

/* ---- the guest ---------------------------------------------------------------------- */

static void *vcpu_thread(void *arg)
{
	klu_vcpu_run_to_done(g.vm, 0, &g.res);
	KLU_WRITE(g.done, 1);
	return NULL;
}

static void guest_start(void)
{
	g.c = (struct klu_irq_counts *)(g.mem + KLU_COUNTS_GPA);
	g.p = klu_vm_params(g.vm);
	if (pthread_create(&g.thread, NULL, vcpu_thread, NULL))
		ka_fail("cannot start the vCPU thread");
}

static void print_counts(const char *when)
{
	printf("# %s: guest counted %u MSIs, %u timer ticks (%u early, %u unarmed), %u other\n",
	       when, KLU_READ(g.c->msi), KLU_READ(g.c->ticks), KLU_READ(g.c->early),
	       KLU_READ(g.c->unarmed), KLU_READ(g.c->other));
}

static void check_running(void)
{
	if (KLU_READ(g.done))
		ka_fail("the guest stopped early (status 0x%x%s)", g.res.done_status,
			g.res.done_status == 0xdead ? ": an exception in the guest" : "");
}

/* What the guest and KVM hold, for a failure to be diagnosed from. */
static void dump_guest(void)
{
	print_counts("stall");
	if (klu_vcpu_hold(g.vm, 0, g.thread))
		klu_vcpu_dump(g.vm, 0);
	else
		printf("#   the vCPU did not leave KVM_RUN within 2 s\n");
	klu_vcpu_release(g.vm, 0);
}

/* Wait until the guest has taken @want MSIs in all, no more. */
static void wait_msi(unsigned int want, const char *what)
{
	uint64_t start = klu_now_ns();
	unsigned int n;

	while ((n = KLU_READ(g.c->msi)) != want) {
		if (n > want)
			ka_fail("%s: the guest counted %u MSIs, want %u: doubled", what, n, want);
		check_running();
		if (klu_now_ns() - start > IRQ_NS) {
			dump_guest();
			ka_fail("%s: the guest counted %u MSIs after %llu s, want %u: lost", what,
				n, IRQ_NS / 1000000000ull, want);
		}
		usleep(1000);
	}
}

/* @RAISES edu interrupts, one at a time: each must reach the guest, once. */
static void raise_interrupts(unsigned int *msi, const char *phase)
{
	char what[64];
	int i;

	for (i = 1; i <= RAISES; i++) {
		snprintf(what, sizeof(what), "%s, edu interrupt %d of %d", phase, i, RAISES);
		klu_edu_wr(&edu, EDU_IRQ_RAISE, EDU_STATUS_RAISE);
		wait_msi(++*msi, what);
		klu_edu_wr(&edu, EDU_IRQ_ACK, EDU_STATUS_RAISE);
	}
	printf("# %s: %d edu interrupts, each taken once by the guest (%u MSIs in all)\n",
	       phase, RAISES, *msi);
}

/* A pattern in guest RAM to edu's buffer at @buf, and back to @dst with an MSI. */
static void dma_round_trip(uint32_t src, uint32_t buf, uint32_t dst, uint32_t seed,
			   unsigned int *msi, const char *phase)
{
	char what[64];

	snprintf(what, sizeof(what), "%s, DMA round trip", phase);
	pattern(g.mem + src, seed);
	memset(g.mem + dst, 0, DMA_LEN);
	klu_edu_dma_start(&edu, src, buf, DMA_LEN, EDU_DMA_RUN);
	klu_edu_dma_wait(&edu, IRQ_NS, what);
	klu_edu_dma_start(&edu, buf, dst, DMA_LEN,
			  EDU_DMA_RUN | EDU_DMA_TO_RAM | EDU_DMA_IRQ);
	klu_edu_dma_wait(&edu, IRQ_NS, what);
	wait_msi(++*msi, what);
	klu_edu_wr(&edu, EDU_IRQ_ACK, EDU_STATUS_DMA);
	check_pattern(dst, seed, what);
	printf("# %s: %u bytes RAM 0x%x -> edu -> RAM 0x%x, completion MSI taken once\n",
	       phase, DMA_LEN, src, dst);
}

/* gsi MSI_GSI: an MSI to APIC ID 0, vector KLU_VEC_MSI; an irqfd on @efd feeds it. */
static void irqfd_attach(int efd)
{
	struct {
		struct kvm_irq_routing r;
		struct kvm_irq_routing_entry e[1];
	} routing = {
		.r.nr = 1,
		.e[0] = {
			.gsi = MSI_GSI,
			.type = KVM_IRQ_ROUTING_MSI,
			.u.msi = { .address_lo = 0xfee00000, .data = KLU_VEC_MSI },
		},
	};
	struct kvm_irqfd irqfd = { .fd = efd, .gsi = MSI_GSI };

	if (ioctl(g.vm->vm_fd, KVM_SET_GSI_ROUTING, &routing) < 0)
		ka_fail("KVM_SET_GSI_ROUTING: %s", strerror(errno));
	if (ioctl(g.vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
		ka_fail("KVM_IRQFD: %s", strerror(errno));
}

static void irqfd_detach(int efd)
{
	struct kvm_irqfd irqfd = { .fd = efd, .gsi = MSI_GSI, .flags = KVM_IRQFD_FLAG_DEASSIGN };

	if (ioctl(g.vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
		ka_fail("KVM_IRQFD deassign: %s", strerror(errno));
}

/* What this test needs of KVM, or a skip that says what is missing. */
static void check_kvm(void)
{
	static const struct { int cap; const char *what; } caps[] = {
		{ KVM_CAP_IRQCHIP, "an in-kernel irqchip (KVM_CAP_IRQCHIP)" },
		{ KVM_CAP_IRQ_ROUTING, "GSI routing (KVM_CAP_IRQ_ROUTING)" },
		{ KVM_CAP_IRQFD, "irqfd (KVM_CAP_IRQFD)" },
		{ KVM_CAP_TSC_DEADLINE_TIMER, "a TSC-deadline LAPIC timer, the guest's" },
		{ KVM_CAP_VCPU_EVENTS, "KVM_GET/SET_VCPU_EVENTS (KVM_CAP_VCPU_EVENTS)" },
		{ KVM_CAP_MP_STATE, "KVM_GET/SET_MP_STATE (KVM_CAP_MP_STATE)" },
	};
	unsigned int i;
	int fd, ver;

	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		ka_skip("/dev/kvm: %s (no KVM module loaded, or no VMX/SVM)", strerror(errno));
	ver = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (ver < 0 && errno == ENODEV)
		ka_skip("/dev/kvm: %s (kvm_thin is loaded but no KVM core is)", strerror(errno));
	for (i = 0; i < ARRAY_SIZE(caps); i++)
		if (ioctl(fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
			ka_skip("KVM has no %s", caps[i].what);
	close(fd);
}

/* ---- vCPU state --------------------------------------------------------------------- */

static void vcpu_ioctl(unsigned long req, void *arg, const char *name)
{
	if (ioctl(g.vm->vcpu_fd[0], req, arg) < 0)
		ka_fail("%s: %s", name, strerror(errno));
}

/* Everything of the held vCPU that this guest's run depends on. */
static void save_vcpu(struct ka_state *st)
{
	struct msr_list msrs = { .hdr.nmsrs = NR_MSRS };
	unsigned int i;
	int n;

	vcpu_ioctl(KVM_GET_REGS, &st->regs, "KVM_GET_REGS");
	vcpu_ioctl(KVM_GET_SREGS, &st->sregs, "KVM_GET_SREGS");
	st->fpu_kind = FPU_LEGACY;
	if (ioctl(g.vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE) > 0 &&
	    !ioctl(g.vm->vcpu_fd[0], KVM_GET_XSAVE, &st->xsave))
		st->fpu_kind = FPU_XSAVE;
	else
		vcpu_ioctl(KVM_GET_FPU, &st->fpu, "KVM_GET_FPU");
	if (ioctl(g.vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0) {
		vcpu_ioctl(KVM_GET_XCRS, &st->xcrs, "KVM_GET_XCRS");
		st->has_xcrs = 1;
	}
	vcpu_ioctl(KVM_GET_LAPIC, &st->lapic, "KVM_GET_LAPIC");
	for (i = 0; i < NR_MSRS; i++)
		msrs.e[i].index = saved_msrs[i];
	n = ioctl(g.vm->vcpu_fd[0], KVM_GET_MSRS, &msrs);
	if (n != (int)NR_MSRS)
		ka_fail("KVM_GET_MSRS: %d of %zu read (%s): MSR 0x%x", n, NR_MSRS,
			n < 0 ? strerror(errno) : "refused", n >= 0 ? saved_msrs[n] : 0);
	memcpy(st->msrs, msrs.e, sizeof(st->msrs));
	vcpu_ioctl(KVM_GET_VCPU_EVENTS, &st->events, "KVM_GET_VCPU_EVENTS");
	vcpu_ioctl(KVM_GET_MP_STATE, &st->mp, "KVM_GET_MP_STATE");
}

static void set_msrs(const struct kvm_msr_entry *e, unsigned int nr, const char *what)
{
	struct msr_list msrs = { .hdr.nmsrs = nr };
	int n;

	memcpy(msrs.e, e, nr * sizeof(*e));
	n = ioctl(g.vm->vcpu_fd[0], KVM_SET_MSRS, &msrs);
	if (n != (int)nr)
		ka_fail("KVM_SET_MSRS (%s): %d of %u written (%s)", what, n, nr,
			n < 0 ? strerror(errno) : "refused");
}

/*
 * The saved state over the new vCPU.  The order matters: the TSC before the LAPIC
 * timer's deadline, which KVM takes only once the LAPIC (its LVTT) is in TSC-deadline
 * mode; and all of it before the irqfd, whose first injection must land in the
 * restored LAPIC, not be overwritten by it.
 */
static void restore_vcpu(struct ka_state *st)
{
	vcpu_ioctl(KVM_SET_SREGS, &st->sregs, "KVM_SET_SREGS");
	vcpu_ioctl(KVM_SET_REGS, &st->regs, "KVM_SET_REGS");
	if (st->fpu_kind == FPU_XSAVE)
		vcpu_ioctl(KVM_SET_XSAVE, &st->xsave, "KVM_SET_XSAVE");
	else
		vcpu_ioctl(KVM_SET_FPU, &st->fpu, "KVM_SET_FPU");
	if (st->has_xcrs)
		vcpu_ioctl(KVM_SET_XCRS, &st->xcrs, "KVM_SET_XCRS");
	set_msrs(st->msrs, NR_MSRS - 1, "TSC, APIC base, MISC_ENABLE, PAT");
	vcpu_ioctl(KVM_SET_LAPIC, &st->lapic, "KVM_SET_LAPIC");
	set_msrs(&st->msrs[NR_MSRS - 1], 1, "TSC deadline");
	st->events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING;
	vcpu_ioctl(KVM_SET_VCPU_EVENTS, &st->events, "KVM_SET_VCPU_EVENTS");
	vcpu_ioctl(KVM_SET_MP_STATE, &st->mp, "KVM_SET_MP_STATE");
}

/* ---- phase A: the first VMM --------------------------------------------------------- */

static const uint8_t zero_token[VFIO_KEEPALIVE_TOKEN_SIZE];

static void write_state(const char *path, const struct ka_state *st)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		ka_fail("%s: %s", path, strerror(errno));
	if (write(fd, st, sizeof(*st)) != (ssize_t)sizeof(*st))
		ka_fail("write %s: %s", path, strerror(errno));
	if (close(fd))
		ka_fail("close %s: %s", path, strerror(errno));
}

static uint32_t keep_timeout(void)
{
	struct vfio_keepalive_info info = { .argsz = sizeof(info) };
	int fd = open("/dev/vfio-keepalive", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		ka_skip("/dev/vfio-keepalive: %s (vfio_keepalive is not loaded)", strerror(errno));
	if (ioctl(fd, VFIO_KEEPALIVE_GET_INFO, &info) < 0)
		ka_fail("VFIO_KEEPALIVE_GET_INFO: %s", strerror(errno));
	close(fd);
	if (info.api_version != VFIO_KEEPALIVE_API_VERSION)
		ka_fail("vfio-keepalive API version %u, want %u", info.api_version,
			VFIO_KEEPALIVE_API_VERSION);
	return info.max_timeout_ms < KEEP_MS ? info.max_timeout_ms : KEEP_MS;
}

/*
 * Pause, save, arm, start a DMA that ends while nobody owns the device, exec.  Before
 * the pause the guest has run at least MIN_RUN_NS: KVM takes a host write of a TSC
 * within a second of what it expects from a new vCPU for an attempt to synchronize
 * vCPUs, and would then restart the guest's TSC from about 0 rather than where it was.
 */
static void __noreturn pause_and_hand_over(struct ka_state *st, uint64_t started,
					   uint32_t timeout_ms, const char *self,
					   const char *path)
{
	struct vfio_keepalive_range range = {
		.iova = 0, .size = MEM_SIZE, .vaddr = (uintptr_t)g.mem,
	};
	struct vfio_keepalive_arm arm = {
		.argsz = sizeof(arm),
		.device_fd = edu.device,
		.group_fd = edu.group,
		.container_fd = edu.container,
		.timeout_ms = timeout_ms,
		.nr_ranges = 1,
		.ranges = (uintptr_t)&range,
	};
	char *args[4];
	int flags;

	while (klu_now_ns() - started < MIN_RUN_NS)
		usleep(10000);
	if (!klu_vcpu_hold(g.vm, 0, g.thread))
		ka_fail("pause: the vCPU did not leave KVM_RUN within 2 s");
	st->pause_ns = klu_now_ns();
	/* From here no interrupt may reach this VM: the new one takes what comes. */
	irqfd_detach(edu.efd);
	save_vcpu(st);
	memcpy(&st->counts, g.c, sizeof(st->counts));
	print_counts("pause");
	if (st->counts.msi != MSI_BEFORE)
		ka_fail("at the pause the guest counted %u MSIs, want %u", st->counts.msi,
			MSI_BEFORE);

	/* the token is the driver's: zeros in, the token out */
	if (ioctl(edu.device, VFIO_KEEPALIVE_ARM, &arm) < 0)
		ka_fail("VFIO_KEEPALIVE_ARM: %s", strerror(errno));
	disarm_fd = edu.device;
	if (!memcmp(arm.token, zero_token, sizeof(zero_token)))
		ka_fail("ARM gave a token of zeros");
	memcpy(st->token, arm.token, sizeof(st->token));
	if (arm.irq_index != VFIO_PCI_MSI_IRQ_INDEX || arm.nr_irqs != 1)
		ka_fail("ARM: irq_index %u with %u vectors, want MSI (%u) with 1", arm.irq_index,
			arm.nr_irqs, VFIO_PCI_MSI_IRQ_INDEX);
	flags = fcntl(arm.owner_fd, F_GETFD);
	if (flags < 0 || !(flags & FD_CLOEXEC))
		ka_fail("ARM's owner_fd is not close-on-exec (F_GETFD 0x%x)", flags);
	printf("# armed: a token of %d bytes from the driver, 1 DMA range, %u ms to reclaim\n",
	       VFIO_KEEPALIVE_TOKEN_SIZE, timeout_ms);

	/*
	 * The device's owner goes now, not at the exec, so that the DMA below ends while the
	 * device has no owner whatever the exec takes.  (The exec closes the rest.)
	 */
	if (klu_edu_rd(&edu, EDU_IRQ_STATUS))
		ka_fail("edu interrupt status 0x%x before the handover, want 0 (all acknowledged)",
			klu_edu_rd(&edu, EDU_IRQ_STATUS));
	st->host_irqs = klu_edu_host_msi_count(edu.pci);
	memset(g.mem + GPA_GAP_DST, 0, DMA_LEN);
	close(arm.owner_fd);
	st->dma_ns = klu_now_ns();
	klu_edu_dma_start(&edu, EDU_BUF_GAP, GPA_GAP_DST, DMA_LEN,
			  EDU_DMA_RUN | EDU_DMA_TO_RAM | EDU_DMA_IRQ);
	printf("# owner file closed, edu -> RAM 0x%x DMA with a completion MSI started; exec\n",
	       GPA_GAP_DST);
	st->exec_ns = klu_now_ns();
	write_state(path, st);
	fflush(stdout);
	args[0] = (char *)self;
	args[1] = "--resume";
	args[2] = (char *)path;
	args[3] = NULL;
	execv("/proc/self/exe", args);
	execvp(self, args);
	ka_fail("exec of %s: %s", self, strerror(errno));
}

static void __noreturn phase_a(const char *self, const char *want_pci, const char *path)
{
	struct ka_state *st = calloc(1, sizeof(*st));
	unsigned int msi = 0;
	uint32_t timeout_ms;
	uint64_t start;
	int memfd, group_nr;
	long khz;

	if (!st)
		ka_fail("out of memory");
	printf("TAP version 13\n1..1\n");
	fflush(stdout);
	check_kvm();
	timeout_ms = keep_timeout();
	klu_edu_find(&edu, want_pci);
	group_nr = klu_edu_bind(&edu, "vfio-keepalive");
	printf("# phase A (pid %d): edu %s, IOMMU group %d\n", getpid(), edu.pci, group_nr);
	klu_edu_open(&edu, group_nr, KLU_EDU_NEED_VADDR);
	klu_edu_msi_enable(&edu, -1);

	/* Guest RAM: a memfd, shared, what type1 can hand to another address space. */
	memfd = memfd_create("vm_keepalive-ram", MFD_CLOEXEC);
	if (memfd < 0 || ftruncate(memfd, MEM_SIZE))
		ka_fail("memfd of %lu bytes: %s", MEM_SIZE, strerror(errno));
	g.mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (g.mem == MAP_FAILED)
		ka_fail("mmap of the guest RAM memfd: %s", strerror(errno));
	g.vm = klu_vm_new_mem(g.mem, MEM_SIZE, 1, KLU_VM_IRQCHIP);
	if (!klu_vm_has_cpuid(g.vm, 1, 'c', 24))
		ka_skip("KVM offers no TSC-deadline LAPIC timer (CPUID.1:ECX[24])");
	klu_edu_dma_map(&edu, g.mem, 0, MEM_SIZE,
			VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
	irqfd_attach(edu.efd);
	khz = ioctl(g.vm->vcpu_fd[0], KVM_GET_TSC_KHZ, 0);
	if (khz <= 0)
		ka_fail("KVM_GET_TSC_KHZ: %s", strerror(errno));

	st->magic = STATE_MAGIC;
	st->size = sizeof(*st);
	st->pid = getpid();
	st->mem_size = MEM_SIZE;
	st->cpuid_hash = cpuid_hash(g.vm->cpuid);
	snprintf(st->pci, sizeof(st->pci), "%s", edu.pci);
	*klu_vm_params(g.vm) = (struct klu_params) {
		.mode = KLU_MODE_IRQ,
		.nr_vcpus = 1,
		.tick_tsc = khz * TICK_MS,
	};
	st->params = *klu_vm_params(g.vm);

	start = klu_now_ns();
	guest_start();
	while (!KLU_READ(g.c->ready)) {
		check_running();
		if (klu_now_ns() - start > PHASE_NS)
			ka_fail("the guest did not set up its LAPIC in %llu s",
				PHASE_NS / 1000000000ull);
		usleep(1000);
	}
	printf("# guest up: 1 vCPU, %lu MiB of memfd RAM at IOVA 0, MSI -> vector 0x%x\n",
	       MEM_SIZE >> 20, KLU_VEC_MSI);

	raise_interrupts(&msi, "phase A");
	dma_round_trip(GPA_A_SRC, EDU_BUF_AB, GPA_A_DST, SEED_A, &msi, "phase A");
	/* What the DMA in flight over the handover will write: in edu's buffer already. */
	pattern(g.mem + GPA_GAP_SRC, SEED_GAP);
	klu_edu_dma_start(&edu, GPA_GAP_SRC, EDU_BUF_GAP, DMA_LEN, EDU_DMA_RUN);
	klu_edu_dma_wait(&edu, IRQ_NS, "phase A, loading edu's buffer");
	if (KLU_READ(g.c->msi) != msi)
		ka_fail("phase A: the guest counted %u MSIs, want %u", KLU_READ(g.c->msi), msi);

	pause_and_hand_over(st, start, timeout_ms, self, path);
}

/* ---- phase B: the new VMM ----------------------------------------------------------- */

static void read_state(const char *path, struct ka_state *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		ka_fail("%s: %s", path, strerror(errno));
	if (read(fd, st, sizeof(*st)) != (ssize_t)sizeof(*st) || st->magic != STATE_MAGIC ||
	    st->size != sizeof(*st))
		ka_fail("%s is not this program's state", path);
	close(fd);
	unlink(path);
}

/*
 * Until the host has taken the MSI of the DMA that phase A started: the device
 * interrupts while nobody owns it, before the reclaim.  vfio-pci's handler signals the
 * eventfd right after the host counts the interrupt; a moment more covers that.
 */
static void wait_gap_dma(const struct ka_state *st)
{
	int64_t n;

	if (st->host_irqs < 0) {
		printf("# no vfio-msi line for %s in /proc/interrupts: waiting 1 s for the DMA\n",
		       st->pci);
		while (klu_now_ns() < st->dma_ns + 1000000000ull)
			usleep(1000);
		return;
	}
	while ((n = klu_edu_host_msi_count(st->pci)) <= st->host_irqs) {
		if (klu_now_ns() - st->dma_ns > IRQ_NS)
			ka_fail("the DMA in flight: no host MSI in %llu s (%s stays at %lld)",
				IRQ_NS / 1000000000ull, "vfio-msi[0]", (long long)n);
		usleep(1000);
	}
	usleep(50000);
	printf("# its MSI reached the host %llu ms after the DMA started, %llu ms after exec\n",
	       ms(klu_now_ns() - st->dma_ns), ms(klu_now_ns() - st->exec_ns));
}

static int phase_b(const char *path)
{
	struct ka_state *st = calloc(1, sizeof(*st));
	struct vfio_keepalive_range ranges[4] = { 0 };
	struct vfio_keepalive_reclaim r = {
		.argsz = sizeof(r),
		.nr_irqs = 4,
		.nr_ranges = 4,
		.ranges = (uintptr_t)ranges,
	};
	struct vfio_keepalive_reclaim again = { .argsz = sizeof(again) };
	struct vfio_keepalive_disarm disarm = { .argsz = sizeof(disarm) };
	int32_t irq_fds[4] = { -1, -1, -1, -1 };
	uint64_t irq_counts[4] = { 0 }, resume_ns, start;
	struct pollfd pfd;
	unsigned int msi;
	int ka, memfd;
	uint16_t cmd;
	uint32_t status;

	if (!st)
		ka_fail("out of memory");
	read_state(path, st);
	printf("# phase B (pid %d, phase A's was %d): %llu ms after the exec\n", getpid(),
	       st->pid, ms(klu_now_ns() - st->exec_ns));
	if (st->pid != getpid())
		ka_fail("phase B runs as pid %d, phase A as %d: not an exec", getpid(), st->pid);
	wait_gap_dma(st);

	ka = open("/dev/vfio-keepalive", O_RDWR | O_CLOEXEC);
	if (ka < 0)
		ka_fail("/dev/vfio-keepalive: %s", strerror(errno));
	memcpy(r.token, st->token, sizeof(r.token));
	snprintf(r.device, sizeof(r.device), "%s", st->pci);
	r.irq_fds = (uintptr_t)irq_fds;
	r.irq_counts = (uintptr_t)irq_counts;
	if (ioctl(ka, VFIO_KEEPALIVE_RECLAIM, &r) < 0)
		ka_fail("VFIO_KEEPALIVE_RECLAIM of %s: %s%s", st->pci, strerror(errno),
			errno == ENOENT ? " (not kept: timed out, or released?)" : "");
	disarm_fd = r.device_fd;
	/* Each token reclaims once: RECLAIM gave the next, and the spent one is refused. */
	if (!memcmp(r.token, st->token, sizeof(r.token)) ||
	    !memcmp(r.token, zero_token, sizeof(zero_token)))
		ka_fail("RECLAIM gave no new token (the same, or zeros)");
	memcpy(again.token, st->token, sizeof(again.token));
	snprintf(again.device, sizeof(again.device), "%s", st->pci);
	errno = 0;
	if (!ioctl(ka, VFIO_KEEPALIVE_RECLAIM, &again) || errno != EACCES)
		ka_fail("a second RECLAIM with the spent token: %s, want EACCES",
			errno ? strerror(errno) : "success");
	close(ka);
	printf("# RECLAIM gave the next token; the spent one is refused (EACCES)\n");
	printf("# reclaimed %s after %llu ms without an owner: %u vector(s), %u range(s)\n",
	       st->pci, ms(r.ownerless_ns), r.nr_irqs, r.nr_ranges);
	if (r.owner_fd < 0)
		ka_fail("RECLAIM returned no owner file (owner_fd %d)", r.owner_fd);
	if (r.irq_index != VFIO_PCI_MSI_IRQ_INDEX || r.nr_irqs != 1)
		ka_fail("RECLAIM: irq_index %u with %u vectors, want MSI (%u) with 1",
			r.irq_index, r.nr_irqs, VFIO_PCI_MSI_IRQ_INDEX);
	if (irq_counts[0] != 1)
		ka_fail("RECLAIM: %llu signals while the device had no owner, want 1 (the DMA's)",
			(unsigned long long)irq_counts[0]);
	if (r.nr_ranges != 1 || ranges[0].iova != 0 || ranges[0].size != st->mem_size)
		ka_fail("RECLAIM: %u ranges, IOVA 0x%llx of 0x%llx bytes; want 1, at 0 of 0x%llx",
			r.nr_ranges, (unsigned long long)ranges[0].iova,
			(unsigned long long)ranges[0].size, (unsigned long long)st->mem_size);
	edu.device = r.device_fd;
	edu.group = r.group_fd;
	edu.container = r.container_fd;
	edu.efd = irq_fds[0];
	snprintf(edu.pci, sizeof(edu.pci), "%s", st->pci);
	memfd = ranges[0].memfd;

	/* The same guest RAM: as the guest left it, plus what the device wrote since. */
	g.mem = mmap(NULL, st->mem_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd,
		     ranges[0].offset);
	if (g.mem == MAP_FAILED)
		ka_fail("mmap of the reclaimed memfd at offset 0x%llx: %s",
			(unsigned long long)ranges[0].offset, strerror(errno));
	g.c = (struct klu_irq_counts *)(g.mem + KLU_COUNTS_GPA);
	if (memcmp(g.mem + KLU_PARAMS_GPA, &st->params, sizeof(st->params)))
		ka_fail("reclaimed guest RAM: the guest's parameters differ from phase A's");
	if (g.c->msi != st->counts.msi || g.c->ticks != st->counts.ticks)
		ka_fail("reclaimed guest RAM: %u MSIs and %u ticks counted, want %u and %u",
			g.c->msi, g.c->ticks, st->counts.msi, st->counts.ticks);
	check_pattern(GPA_A_DST, SEED_A, "phase A's DMA, in the reclaimed RAM");
	check_pattern(GPA_GAP_DST, SEED_GAP, "the DMA that ran while the device had no owner");
	printf("# the DMA that ran while the device had no owner landed in guest RAM (%u bytes)\n",
	       DMA_LEN);
	klu_edu_dma_unmap(&edu, 0, st->mem_size, VFIO_DMA_UNMAP_FLAG_VADDR);
	klu_edu_dma_map(&edu, g.mem, 0, st->mem_size, VFIO_DMA_MAP_FLAG_VADDR);
	printf("# DMA mapping re-owned (VADDR): IOVA 0 -> this process's mapping of the memfd\n");

	klu_edu_regions(&edu);
	cmd = klu_edu_cfg_rd16(&edu, PCI_CMD_OFF);
	if ((cmd & (PCI_CMD_MEMORY | PCI_CMD_MASTER)) != (PCI_CMD_MEMORY | PCI_CMD_MASTER))
		ka_fail("PCI command 0x%04x after the handover: memory or bus master off", cmd);
	status = klu_edu_rd(&edu, EDU_IRQ_STATUS);
	if (status != EDU_STATUS_DMA)
		ka_fail("edu interrupt status 0x%x after the handover, want 0x%x (the DMA's)",
			status, EDU_STATUS_DMA);
	if (klu_edu_rd(&edu, EDU_DMA_CMD) & EDU_DMA_RUN)
		ka_fail("edu: the DMA is still running after its MSI");
	klu_edu_wr(&edu, EDU_IRQ_ACK, EDU_STATUS_DMA);
	pfd = (struct pollfd){ .fd = edu.efd, .events = POLLIN };
	if (poll(&pfd, 1, 0) != 1)
		ka_fail("the reclaimed eventfd holds no signal: the ownerless MSI was consumed");

	/* A new VM over the same memory, the vCPU as it was, and the irqfd. */
	g.vm = klu_vm_new_mem(g.mem, st->mem_size, 1, KLU_VM_IRQCHIP | KLU_VM_KEEP_MEM);
	if (cpuid_hash(g.vm->cpuid) != st->cpuid_hash)
		ka_fail("KVM's CPUID differs from phase A's");
	restore_vcpu(st);
	irqfd_attach(edu.efd);
	resume_ns = klu_now_ns();
	guest_start();
	printf("# resumed: the vCPU was out of KVM_RUN for %llu ms (blackout)\n",
	       ms(resume_ns - st->pause_ns));

	/* The ownerless MSI: once, from the irqfd's assignment; no second one after. */
	msi = st->counts.msi + 1;
	wait_msi(msi, "the MSI that came while the device had no owner");
	usleep(300000);
	if (KLU_READ(g.c->msi) != msi)
		ka_fail("the ownerless MSI: the guest counted %u MSIs, want %u: doubled",
			KLU_READ(g.c->msi), msi);
	printf("# the guest took the MSI that came while nobody owned the device, once (%u)\n",
	       msi);
	start = klu_now_ns();
	while (KLU_READ(g.c->ticks) <= st->counts.ticks) {
		check_running();
		if (klu_now_ns() - start > IRQ_NS) {
			dump_guest();
			ka_fail("no timer tick in %llu s after the resume (%u at the pause)",
				IRQ_NS / 1000000000ull, st->counts.ticks);
		}
		usleep(1000);
	}
	raise_interrupts(&msi, "phase B");
	dma_round_trip(GPA_B_SRC, EDU_BUF_AB, GPA_B_DST, SEED_B, &msi, "phase B");

	/* Stop: the guest waits for two more timer ticks, then reports. */
	KLU_WRITE(g.p->stop, 1);
	start = klu_now_ns();
	while (!KLU_READ(g.done)) {
		if (klu_now_ns() - start > PHASE_NS) {
			print_counts("stop");
			ka_fail("the guest did not finish within %llu s of the stop",
				PHASE_NS / 1000000000ull);
		}
		usleep(1000);
	}
	pthread_join(g.thread, NULL);
	print_counts("end");
	if (g.res.done_status || g.res.nr_words != 1)
		ka_fail("the guest ended with status 0x%x and %d results, want 0 and 1",
			g.res.done_status, g.res.nr_words);
	if (g.res.words[0] != g.c->ticks)
		ka_fail("the guest reported %u ticks, counted %u", g.res.words[0], g.c->ticks);
	if (g.c->early || g.c->unarmed || g.c->other)
		ka_fail("%u timer ticks early, %u unarmed, %u on vectors nobody sent; want none",
			g.c->early, g.c->unarmed, g.c->other);
	if (g.c->msi != msi || msi != MSI_TOTAL)
		ka_fail("MSIs: the guest counted %u, %u were raised, want %d", g.c->msi, msi,
			MSI_TOTAL);

	if (ioctl(edu.device, VFIO_KEEPALIVE_DISARM, &disarm) < 0)
		ka_fail("VFIO_KEEPALIVE_DISARM: %s", strerror(errno));
	disarm_fd = -1;
	close(r.owner_fd);
	close(edu.device);
	klu_edu_dma_unmap(&edu, 0, st->mem_size, 0);
	close(edu.group);
	close(edu.container);
	klu_vm_destroy(g.vm);
	close(edu.efd);
	munmap(g.mem, st->mem_size);
	close(memfd);
	printf("# %u MSIs: %d before the handover, 1 while nobody owned the device, %d after\n",
	       msi, MSI_BEFORE, MSI_BEFORE);
	printf("# blackout (pause to resume) %llu ms; the device had no owner for %llu ms\n",
	       ms(resume_ns - st->pause_ns), ms(r.ownerless_ns));
	printf("ok vm_keepalive\n");
	free(st);
	return KSFT_PASS;
}

int main(int argc, char **argv)
{
	const char *pci = NULL, *path = STATE_FILE;
	int opt;

	atexit(disarm_at_exit);
	if (argc == 3 && !strcmp(argv[1], "--resume"))
		return phase_b(argv[2]);
	while ((opt = getopt(argc, argv, "d:f:")) != -1) {
		switch (opt) {
		case 'd':
			pci = optarg;
			break;
		case 'f':
			path = optarg;
			break;
		default:
			fprintf(stderr, "usage: %s [-d PCI device] [-f state file]\n", argv[0]);
			return KSFT_FAIL;
		}
	}
	phase_a(argv[0], pci, path);
}
