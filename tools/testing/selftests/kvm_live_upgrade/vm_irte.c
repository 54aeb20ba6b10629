// SPDX-License-Identifier: GPL-2.0
/*
 * vm_irte: a live move leaves the VT-d interrupt remapping table entry (IRTE) of an
 * assigned device's MSI as it was, byte for byte, and loses no MSI under a steady load.
 *
 * The device is on stock vfio-pci and its MSI is the eventfd of an irqfd into the
 * test's VM (one vCPU, in-kernel irqchip, a GSI route to APIC ID 0 with vector
 * KLU_VEC_MSI), as vm_irq -e does it.  The VM has a kvm-vfio device with the device's
 * VFIO group added, as QEMU makes one for every VM with a vfio-pci device; the moves
 * take it along.  Once kvm_thin's irqbypass file shows the
 * device's producer connected to the irqfd, the IRTE the MSI points at is read through
 * the klu_irte test module (snapshot 0).  Then -n round trips (3) of live moves between
 * cores A and B, while a thread raises MSIs one at a time, each counted by the guest
 * before the next (a lost MSI stalls it, a doubled one shows as one more than raised).
 * Before each move the guest must have counted MIN_PER_MOVE more MSIs, so that every
 * move lands in a flow of them.  After each move:
 *   - the move succeeded and its last_move says irqbypass_kept=1 (the producer was
 *     handed over, not disconnected) and, with a posted entry, pi_handed=1 (the
 *     vCPU's posted-interrupt descriptor was handed over);
 *   - the IRTE, its index, its unit and the device's MSI message are as in snapshot 0;
 *   - if snapshot 0 was in posted format (IM=1), the entry is still posted, with the
 *     same posted-descriptor address and vector.  QEMU's VT-d does not post: there the
 *     entry is in remapped format and the run log says that the posted checks were
 *     skipped.
 * After the moves the kvm-vfio device's file deletes the group and adds it again (the
 * new core's device holds it), and once the VM and the device are closed, the group
 * opens again (no reference to its file was left behind; VFIO lets it be open once).
 * At the end: the guest counted every MSI raised exactly once, the moves ran while at
 * least 2 * round trips * MIN_PER_MOVE were raised, the IRTE is still as it was, and,
 * where kvm_thin keeps the bypass (mode=keep) and the entry is remapped, the host's
 * count of the device's interrupt grew by the number raised (a posted interrupt does not
 * reach the host).  Each check prints what it wanted and what it saw.
 *
 * The device: -d BDF names one bound to vfio-pci already (it is not rebound); without
 * -d, QEMU's edu (1234:11e8), which is bound to vfio-pci if it is not.  edu's recipe is
 * built in; any other device needs -r FILE, lines of:
 *	raise BAR OFFSET WIDTH VALUE	one MSI: write VALUE (WIDTH bits: 8, 16, 32 or 64)
 *					at OFFSET of BAR (0 to 5), through VFIO
 *	ack BAR OFFSET WIDTH VALUE	optional: written before each raise but the first,
 *					and after the last (the guest has counted the MSI)
 *	msix ENTRY			optional: the MSI comes on MSI-X table entry ENTRY
 *					(default: plain MSI)
 * with numbers in C notation; blank lines and lines starting with '#' are skipped.
 * edu's recipe is "raise 0 0x60 32 1", "ack 0 0x64 32 1".  Only edu's recipe has been
 * run (in the QEMU bed); the MSI-X path of the test and of klu_irte has not.
 *
 * On bare metal: a change of the host IRQ's affinity (irqbalance) rewrites a remapped
 * IRTE's destination, which this test would take for a move's doing: run it with the
 * device's IRQ left alone.
 *
 * Skips: not root, no /dev/kvm, no kvm_thin or fewer than two cores, no /dev/klu_irte
 * (insmod klu_irte.ko, from modules/), no device, an MSI not in remappable format
 * (interrupt remapping off).
 *
 * Usage: vm_irte [-a TAG] [-b TAG] [-d BDF] [-r FILE] [-n ROUND_TRIPS]
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "klu_edu.h"
#include "klu_irte.h"
#include "klu_thin.h"
#include "klu_vm.h"

#define IRTE_DEV	"/dev/klu_irte"
#define MSI_GSI		24
#define MIN_PER_MOVE	10		/* MSIs counted before each move and after the last */
#define STALL_NS	5000000000ull	/* an MSI not counted by then is lost */
#define WAIT_NS		30000000000ull	/* for MIN_PER_MOVE MSIs, or the guest to finish */
#define TICK_MS		10		/* the guest's timer, which it needs to finish */

/* The IRTE's fields the checks look at (VT-d spec 9.10, 9.11) */
#define IRTE_PRESENT(lo)	((lo) & 1)
#define IRTE_POSTED(lo)		(((lo) >> 15) & 1)		/* IM */
#define IRTE_VECTOR(lo)		(((lo) >> 16) & 0xff)
#define IRTE_DEST(lo)		((lo) >> 32)			/* remapped */
#define IRTE_SID(hi)		((hi) & 0xffff)
#define IRTE_SVT(hi)		(((hi) >> 18) & 3)
/* posted: PDA[31:6] in bits 63:38, PDA[63:32] in bits 127:96 */
#define IRTE_PDA(lo, hi)	((((lo) >> 38) << 6) | ((hi) & ~0xffffffffull))

/* One register write of a recipe */
struct reg_op {
	bool set;
	unsigned int bar, width;	/* width in bits */
	uint64_t off, value;
	uint64_t region;		/* the BAR's offset in the VFIO device file */
};

static struct recipe {
	struct reg_op raise, ack;
	int msix;			/* the MSI-X entry; -1: plain MSI */
} recipe = { .msix = -1 };

static const struct recipe edu_recipe = {
	.raise = { .set = true, .bar = 0, .off = EDU_IRQ_RAISE, .width = 32,
		   .value = EDU_STATUS_RAISE },
	.ack = { .set = true, .bar = 0, .off = EDU_IRQ_ACK, .width = 32,
		 .value = EDU_STATUS_RAISE },
	.msix = -1,
};

/* The MSI raiser and the main thread */
static struct raiser {
	unsigned int stop;		/* KLU_READ/KLU_WRITE: main to the raiser */
	unsigned int raised;		/* MSIs raised so far */
	unsigned int lost;		/* the MSI that did not come in STALL_NS, 0: none */
	unsigned int doubled;		/* what the guest counted when it was too much */
	unsigned int *guest_msi;	/* the guest's count */
} rs;

static struct vcpu_run {
	struct klu_vm *vm;
	unsigned int done;		/* KLU_READ/KLU_WRITE */
	struct klu_result res;
} run;

static struct klu_edu dev = KLU_EDU_INIT(NULL, NULL);
static struct klu_irte_read snap;	/* snapshot 0 */
static unsigned int domain, bus, devfn;
static int irte_fd = -1, vm_id, group_nr, kvfio = -1;

static void no_device(const char *fmt, ...)
{
	klu_skip("no device to raise MSIs: %s %s, %s", "pass -d BDF of a vfio-pci device",
		 "with a recipe (-r)", "or run in the QEMU bed (edu)");
}

/* ---- the recipe ------------------------------------------------------------------- */

static void parse_op(struct reg_op *op, const char *file, int line, const char *args)
{
	unsigned long long off, value;
	unsigned int bar, width;
	char extra;

	if (sscanf(args, "%u %lli %u %lli %c", &bar, &off, &width, &value, &extra) != 4 ||
	    bar > 5 || (width != 8 && width != 16 && width != 32 && width != 64))
		klu_fail("%s:%d: want 'BAR OFFSET WIDTH VALUE' (BAR 0-5, WIDTH 8/16/32/64)",
			 file, line);
	*op = (struct reg_op){ .set = true, .bar = bar, .off = off, .width = width,
			       .value = value };
}

static void read_recipe(const char *file)
{
	char buf[256], word[16];
	int line = 0, n = 0;
	FILE *f = fopen(file, "r");

	if (!f)
		klu_fail("recipe %s: %s", file, strerror(errno));
	while (fgets(buf, sizeof(buf), f)) {
		line++;
		if (sscanf(buf, "%15s %n", word, &n) != 1 || word[0] == '#')
			continue;
		if (!strcmp(word, "raise"))
			parse_op(&recipe.raise, file, line, buf + n);
		else if (!strcmp(word, "ack"))
			parse_op(&recipe.ack, file, line, buf + n);
		else if (!strcmp(word, "msix") && sscanf(buf + n, "%d", &recipe.msix) == 1 &&
			 recipe.msix >= 0 && recipe.msix < 2048)
			continue;
		else
			klu_fail("%s:%d: want raise, ack or msix ENTRY (0-2047), saw '%s'", file,
				 line, word);
	}
	fclose(f);
	if (!recipe.raise.set)
		klu_fail("recipe %s has no raise line", file);
}

static void op_region(struct reg_op *op)
{
	if (op->set)
		op->region = klu_edu_region(&dev, VFIO_PCI_BAR0_REGION_INDEX + op->bar,
					    op->off + op->width / 8);
}

static void op_write(const struct reg_op *op)
{
	size_t n = op->width / 8;

	/* The low @n bytes of the value: x86 is little-endian. */
	if (pwrite(dev.device, &op->value, n, op->region + op->off) != (ssize_t)n)
		klu_fail("%s: write of 0x%llx (%u bits) at BAR%u + 0x%llx: %s", dev.pci,
			 (unsigned long long)op->value, op->width, op->bar,
			 (unsigned long long)op->off, strerror(errno));
}

/* ---- the device ------------------------------------------------------------------- */

/* -d: a device bound to vfio-pci already.  Without: edu, bound here if it is not. */
static void device_open(const char *want, const char *recipe_file)
{
	char path[300], target[300], kind[32], *drv;
	unsigned int slot, fn;
	bool edu;
	ssize_t n;
	int group;

	if (want) {
		if (strlen(want) >= sizeof(dev.pci) || strchr(want, '/'))
			klu_fail("-d %s: not a PCI device name", want);
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", want);
		if (access(path, F_OK))
			klu_skip("no PCI device %s", want);
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/driver", want);
		n = readlink(path, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = 0;
		drv = strrchr(target, '/');
		if (!drv || strcmp(drv + 1, "vfio-pci"))
			klu_skip("%s is not bound to vfio-pci (bind it, or pass another -d)", want);
		memcpy(dev.pci, want, strlen(want) + 1);
	} else {
		dev.skip = no_device;
		klu_edu_find(&dev, NULL);
		dev.skip = NULL;
	}
	if (sscanf(dev.pci, "%x:%x:%x.%x", &domain, &bus, &slot, &fn) != 4 || bus > 0xff ||
	    slot > 0x1f || fn > 7)
		klu_fail("%s: not a PCI device name (DOMAIN:BUS:SLOT.FUNCTION)", dev.pci);
	devfn = slot << 3 | fn;
	edu = klu_edu_is_edu(dev.pci);
	if (recipe_file)
		read_recipe(recipe_file);
	else if (edu)
		recipe = edu_recipe;
	else
		klu_fail("%s is no edu: pass its recipe with -r FILE", dev.pci);
	group = klu_edu_bind(&dev, "vfio-pci");
	group_nr = group;
	/* With a recipe, even an edu is any device: its identity is not checked. */
	klu_edu_open(&dev, group, edu && !recipe_file ? 0 : KLU_EDU_ANY_DEVICE);
	op_region(&recipe.raise);
	op_region(&recipe.ack);
	if (recipe.msix < 0)
		snprintf(kind, sizeof(kind), "MSI");
	else
		snprintf(kind, sizeof(kind), "MSI-X entry %d", recipe.msix);
	printf("# %s%s through vfio-pci (IOMMU group %d) raises the MSIs (%s), recipe: %s\n",
	       dev.pci, edu ? " (edu)" : "", group, kind, recipe_file ? recipe_file : "edu's");
}

/*
 * kvm-vfio, as QEMU uses it: the device (made on the first call), and @attr (add or
 * delete) of the device's VFIO group on it.  The device's fd.
 */
static int kvm_vfio_group(uint64_t attr, const char *when)
{
	struct kvm_create_device cd = { .type = KVM_DEV_TYPE_VFIO };
	int32_t fd = dev.group;
	struct kvm_device_attr da = {
		.group = KVM_DEV_VFIO_GROUP, .attr = attr, .addr = (uintptr_t)&fd,
	};
	int err;

	if (kvfio < 0) {
		if (ioctl(run.vm->vm_fd, KVM_CREATE_DEVICE, &cd) < 0)
			klu_fail("KVM_CREATE_DEVICE of kvm-vfio: %s", strerror(errno));
		kvfio = cd.fd;
	}
	err = ioctl(kvfio, KVM_SET_DEVICE_ATTR, &da) ? errno : 0;
	klu_check(!err, "kvm-vfio, %s: %s VFIO group %d: %s", when,
		  attr == KVM_DEV_VFIO_GROUP_ADD ? "add" : "delete", group_nr,
		  err ? strerror(err) : "done");
	return kvfio;
}

static int64_t host_count(void)
{
	return klu_edu_host_irq_count(dev.pci, recipe.msix >= 0,
				      recipe.msix < 0 ? 0 : recipe.msix);
}

/* ---- the IRTE --------------------------------------------------------------------- */

static int irte_read(struct klu_irte_read *r)
{
	*r = (struct klu_irte_read){
		.argsz = sizeof(*r),
		.flags = recipe.msix < 0 ? 0 : KLU_IRTE_MSIX,
		.domain = domain,
		.bus = bus,
		.devfn = devfn,
		.msix_entry = recipe.msix < 0 ? 0 : recipe.msix,
	};
	return ioctl(irte_fd, KLU_IRTE_READ, r) ? errno : 0;
}

/* What a snapshot is, in one line for the checks: the entry as one 128-bit number. */
static const char *irte_str(const struct klu_irte_read *r, char *buf, size_t size)
{
	snprintf(buf, size, "index %u unit %#llx MSI 0x%08x:%08x/0x%x IRTE 0x%016llx%016llx",
		 r->index, (unsigned long long)r->dmar_base, r->msi_addr_hi, r->msi_addr_lo,
		 r->msi_data, (unsigned long long)r->irte[1], (unsigned long long)r->irte[0]);
	return buf;
}

static void irte_print(const char *when, const struct klu_irte_read *r)
{
	uint64_t lo = r->irte[0], hi = r->irte[1];
	char buf[256];

	printf("# %s: %s\n", when, irte_str(r, buf, sizeof(buf)));
	printf("#   IRTA %#llx (%u entries), found by %s in %u reads\n",
	       (unsigned long long)r->irta, 2u << (r->irta & 0xf),
	       r->match == KLU_IRTE_MATCH_SID ? "its source id" : "being the only one", r->reads);
	printf("#   %s: present=%u vector=0x%02x", IRTE_POSTED(lo) ? "posted" : "remapped",
	       (unsigned int)IRTE_PRESENT(lo), (unsigned int)IRTE_VECTOR(lo));
	if (IRTE_POSTED(lo))
		printf(" PDA=%#llx urgent=%u", (unsigned long long)IRTE_PDA(lo, hi),
		       (unsigned int)((lo >> 14) & 1));
	else
		printf(" dest=0x%08x dm=%u dlm=%u", (unsigned int)IRTE_DEST(lo),
		       (unsigned int)((lo >> 2) & 1), (unsigned int)((lo >> 5) & 7));
	printf(" sid=%04x svt=%u\n", (unsigned int)IRTE_SID(hi), (unsigned int)IRTE_SVT(hi));
}

/* The IRTE now is snapshot 0, byte for byte; and, if that was posted, still posted. */
static void check_irte(const char *when)
{
	char want[256], saw[256];
	struct klu_irte_read r;
	uint64_t lo, hi;
	bool same;
	int err;

	err = irte_read(&r);
	if (!klu_check(!err, "%s: read the IRTE: want success, saw %s", when,
		       err ? strerror(err) : "success"))
		return;
	same = r.index == snap.index && r.dmar_base == snap.dmar_base &&
	       r.msi_addr_lo == snap.msi_addr_lo && r.msi_addr_hi == snap.msi_addr_hi &&
	       r.msi_data == snap.msi_data && !memcmp(r.irte, snap.irte, sizeof(r.irte));
	klu_check(same, "%s: IRTE want %s, saw %s", when, irte_str(&snap, want, sizeof(want)),
		  same ? "the same" : irte_str(&r, saw, sizeof(saw)));
	if (!same)
		irte_print(when, &r);
	if (!IRTE_POSTED(snap.irte[0]))
		return;
	lo = r.irte[0];
	hi = r.irte[1];
	klu_check(IRTE_POSTED(lo) && IRTE_PDA(lo, hi) == IRTE_PDA(snap.irte[0], snap.irte[1]) &&
		  IRTE_VECTOR(lo) == IRTE_VECTOR(snap.irte[0]),
		  "%s: posted IRTE want IM=1 PDA=%#llx vector=0x%02x, saw IM=%u PDA=%#llx vector=0x%02x",
		  when, (unsigned long long)IRTE_PDA(snap.irte[0], snap.irte[1]),
		  (unsigned int)IRTE_VECTOR(snap.irte[0]), (unsigned int)IRTE_POSTED(lo),
		  (unsigned long long)IRTE_PDA(lo, hi), (unsigned int)IRTE_VECTOR(lo));
}

/* ---- the MSIs --------------------------------------------------------------------- */

static void *vcpu_thread(void *arg)
{
	klu_vcpu_run_to_done(run.vm, 0, &run.res);
	KLU_WRITE(run.done, 1);
	return NULL;
}

/* One MSI at a time, until stop: each counted by the guest before the next. */
static void *raise_thread(void *arg)
{
	unsigned int n = 0, seen;
	uint64_t start;

	while (!KLU_READ(rs.stop)) {
		if (n && recipe.ack.set)
			op_write(&recipe.ack);
		op_write(&recipe.raise);
		KLU_WRITE(rs.raised, ++n);
		start = klu_now_ns();
		while ((seen = KLU_READ(*rs.guest_msi)) < n) {
			if (klu_now_ns() - start > STALL_NS) {
				KLU_WRITE(rs.lost, n);
				return NULL;
			}
			usleep(500);
		}
		if (seen > n) {
			KLU_WRITE(rs.doubled, seen);
			return NULL;
		}
	}
	if (n && recipe.ack.set)
		op_write(&recipe.ack);
	return NULL;
}

/* The raiser or the guest stopped: say why, and end the test. */
static void check_flow(const char *when)
{
	unsigned int lost = KLU_READ(rs.lost), doubled = KLU_READ(rs.doubled);

	if (lost)
		klu_fail("%s: MSI %u did not reach the guest in %llu s: lost (host count %lld)",
			 when, lost, STALL_NS / 1000000000ull, (long long)host_count());
	if (doubled)
		klu_fail("%s: the guest counted %u MSIs of %u raised: doubled", when, doubled,
			 KLU_READ(rs.raised));
	if (KLU_READ(run.done))
		klu_fail("%s: the vCPU stopped early (status 0x%x%s)", when, run.res.done_status,
			 run.res.done_status == 0xdead ? ": an exception in the guest" : "");
}

/* Until the guest has counted @n more MSIs than now. */
static bool wait_msis(const char *when, unsigned int n)
{
	unsigned int from = KLU_READ(*rs.guest_msi), got;
	uint64_t start = klu_now_ns();

	while ((got = KLU_READ(*rs.guest_msi) - from) < n && klu_now_ns() - start < WAIT_NS) {
		check_flow(when);
		usleep(1000);
	}
	return klu_check(got >= n, "%s: MSIs flowing: want %u more counted within %llu s, saw %u",
			 when, n, WAIT_NS / 1000000000ull, got);
}

/* ---- the moves -------------------------------------------------------------------- */

/* One live move under the MSIs, which must succeed and leave the IRTE alone. */
static unsigned int move_checked(int n, const char *from, const char *to)
{
	unsigned int before, during;
	char when[128], core[256];
	int err;

	snprintf(when, sizeof(when), "move %d (%s -> %s)", n, from, to);
	wait_msis(when, MIN_PER_MOVE);
	before = KLU_READ(rs.raised);
	err = klu_thin_move(vm_id, to);
	during = KLU_READ(rs.raised) - before;
	klu_check(!err, "%s: write '%d %s' to " KLU_THIN "/move: want success, saw %s", when,
		  vm_id, to, err ? strerror(err) : "success");
	klu_thin_vm_file(vm_id, "core", core, sizeof(core));
	klu_check(!strcmp(core, to), "%s: core want %s, saw %s", when, to, core);
	klu_thin_check_last_move(vm_id, when, "ok", from, to, 1, 0);
	/* A posted entry stays right only if the vCPU's descriptor was handed over. */
	if (IRTE_POSTED(snap.irte[0]))
		klu_check(klu_thin_last_move_field(vm_id, "pi_handed") == 1,
			  "%s: last_move want pi_handed=1 (posted IRTE), saw %ld", when,
			  klu_thin_last_move_field(vm_id, "pi_handed"));
	check_irte(when);
	check_flow(when);
	printf("# %s: %u MSIs raised while the move ran, %u in all\n", when, during,
	       KLU_READ(rs.raised));
	return during;
}

/* kvm_thin's irqbypass counter @name reaches @want (or, @up false, falls to it). */
static bool wait_field(const char *name, long want, bool up)
{
	uint64_t start = klu_now_ns();
	bool there;
	long v;

	for (;;) {
		v = klu_thin_bypass_field(name);
		there = up ? v >= want : v <= want;
		if (there || klu_now_ns() - start > STALL_NS)
			return there;
		usleep(10000);
	}
}

int main(int argc, char **argv)
{
	const char *dev_want = NULL, *recipe_file = NULL;
	char a[256] = "", b[256] = "", mode[16];
	unsigned int rounds = 3, during = 0, start_raised, window;
	long base_consumers, base_connected;
	struct klu_irq_counts *counts;
	pthread_t vcpu, raiser;
	int64_t host_start, host_end;
	struct klu_params *p;
	bool posted;
	int opt, efd, n, err;
	uint64_t start;
	long khz;

	while ((opt = getopt(argc, argv, "a:b:d:r:n:")) != -1) {
		switch (opt) {
		case 'a':
			snprintf(a, sizeof(a), "%s", optarg);
			break;
		case 'b':
			snprintf(b, sizeof(b), "%s", optarg);
			break;
		case 'd':
			dev_want = optarg;
			break;
		case 'r':
			recipe_file = optarg;
			break;
		case 'n':
			rounds = strtoul(optarg, NULL, 0);
			break;
		default:
			rounds = 0;
			break;
		}
	}
	if (!rounds || optind != argc) {
		fprintf(stderr, "usage: %s %s\n", argv[0],
			"[-a TAG] [-b TAG] [-d BDF] [-r FILE] [-n ROUND_TRIPS >= 1]");
		return KSFT_FAIL;
	}
	printf("TAP version 13\n1..1\n");
	fflush(stdout);
	if (geteuid())
		klu_skip("not root");
	if (access("/dev/kvm", F_OK))
		klu_skip("no /dev/kvm (no KVM module loaded, or no VMX/SVM)");
	if (access(KLU_THIN, F_OK))
		klu_skip("no " KLU_THIN " (kvm_thin is not loaded)");
	n = klu_thin_cores("", NULL, 0);
	if (n < 2)
		klu_skip("%d core(s) loaded, a live move needs two (kvm-upgrade load <tag>)", n);
	if (access(IRTE_DEV, F_OK))
		klu_skip("no " IRTE_DEV ": insmod klu_irte.ko (modules/ of these selftests)");
	irte_fd = open(IRTE_DEV, O_RDWR | O_CLOEXEC);
	if (irte_fd < 0)
		klu_fail("open " IRTE_DEV ": %s", strerror(errno));
	if (!klu_thin_bypass_mode(mode, sizeof(mode)))
		klu_fail("no mode in " KLU_THIN "/irqbypass");
	device_open(dev_want, recipe_file);

	/* The VM, on core A. */
	run.vm = klu_vm_new(KLU_DATA_GPA, 1, KLU_VM_IRQCHIP);
	if (!klu_vm_has_cpuid(run.vm, 1, 'c', 24))
		klu_skip("KVM offers no TSC-deadline LAPIC timer (CPUID.1:ECX[24])");
	khz = ioctl(run.vm->vcpu_fd[0], KVM_GET_TSC_KHZ, 0);
	if (khz <= 0)
		klu_fail("KVM_GET_TSC_KHZ: %s", strerror(errno));
	vm_id = klu_thin_vm_id();
	if (vm_id < 0)
		klu_fail("no VM of pid %d in " KLU_THIN "/vms", getpid());
	klu_thin_pick_cores(vm_id, a, b, sizeof(a));
	kvfio = kvm_vfio_group(KVM_DEV_VFIO_GROUP_ADD, "before the moves");
	printf("# VM %d on core %s; moves go to %s and back (%u round trips); irqbypass mode=%s\n",
	       vm_id, a, b, rounds, mode);

	/* Its irqfd, then the device's MSI on the irqfd's eventfd: the producer connects. */
	base_consumers = klu_thin_bypass_field("consumers");
	base_connected = klu_thin_bypass_field("connected");
	efd = klu_vm_msi_irqfd(run.vm, MSI_GSI, KLU_VEC_MSI);
	counts = (struct klu_irq_counts *)(run.vm->mem + KLU_COUNTS_GPA);
	rs.guest_msi = &counts[0].msi;
	p = klu_vm_params(run.vm);
	*p = (struct klu_params){
		.mode = KLU_MODE_IRQ,
		.nr_vcpus = 1,
		.tick_tsc = khz * TICK_MS,
	};
	if (pthread_create(&vcpu, NULL, vcpu_thread, NULL))
		klu_fail("cannot start the vCPU thread");
	start = klu_now_ns();
	while (!KLU_READ(counts[0].ready)) {
		check_flow("start");
		if (klu_now_ns() - start > STALL_NS)
			klu_fail("the vCPU did not set up its LAPIC in 5 s");
		usleep(1000);
	}
	if (recipe.ack.set)	/* what an earlier user left is not ours to count */
		op_write(&recipe.ack);
	klu_edu_irq_enable(&dev, recipe.msix < 0 ? VFIO_PCI_MSI_IRQ_INDEX :
			   VFIO_PCI_MSIX_IRQ_INDEX, recipe.msix < 0 ? 0 : recipe.msix, efd);
	host_start = host_count();
	if (host_start < 0)
		klu_fail("no vfio-%s line of %s in /proc/interrupts with its MSI enabled",
			 recipe.msix < 0 ? "msi[0]" : "msix", dev.pci);
	klu_check(wait_field("connected", base_connected + 1, true),
		  "irqbypass: the producer connects: want connected=%ld, saw %ld",
		  base_connected + 1, klu_thin_bypass_field("connected"));

	/* Snapshot 0. */
	err = irte_read(&snap);
	if (err == EOPNOTSUPP)
		klu_skip("interrupt remapping is off (MSI 0x%08x:%08x/0x%x not remappable)",
			 snap.msi_addr_hi, snap.msi_addr_lo, snap.msi_data);
	if (err)
		klu_fail("KLU_IRTE_READ of %s: %s (the kernel log says why)", dev.pci,
			 strerror(err));
	irte_print("snapshot 0", &snap);
	posted = IRTE_POSTED(snap.irte[0]);
	klu_check(IRTE_PRESENT(snap.irte[0]), "snapshot 0: IRTE want present, saw P=%u",
		  (unsigned int)IRTE_PRESENT(snap.irte[0]));
	if (posted)
		printf("# IRTE posted (IM=1): checked byte-identical, and its PDA and vector\n");
	else
		printf("# IRTE remapped (no posted interrupts here): %s\n",
		       "checked byte-identical; posted-format checks skipped");

	/* The moves, under a steady flow of MSIs. */
	if (pthread_create(&raiser, NULL, raise_thread, NULL))
		klu_fail("cannot start the MSI thread");
	start_raised = KLU_READ(rs.raised);
	for (n = 0; n < (int)rounds; n++) {
		during += move_checked(2 * n + 1, a, b);
		during += move_checked(2 * n + 2, b, a);
	}
	wait_msis("after the moves", MIN_PER_MOVE);
	window = KLU_READ(rs.raised) - start_raised;
	klu_check(window >= 2 * rounds * MIN_PER_MOVE,
		  "moves: want at least %u MSIs raised from the first move to the end, saw %u (%u while a move ran)",
		  2 * rounds * MIN_PER_MOVE, window, during);
	KLU_WRITE(rs.stop, 1);
	pthread_join(raiser, NULL);
	check_flow("the end");
	check_irte("the end");
	/* The new core's kvm-vfio device has the group: it deletes it, and takes it again. */
	kvm_vfio_group(KVM_DEV_VFIO_GROUP_DEL, "after the moves");
	kvm_vfio_group(KVM_DEV_VFIO_GROUP_ADD, "after the moves");

	/* Every MSI counted once; the host saw each unless it was posted. */
	host_end = host_count();
	klu_check(KLU_READ(counts[0].msi) == KLU_READ(rs.raised),
		  "guest: want %u MSIs counted (as raised), saw %u", KLU_READ(rs.raised),
		  KLU_READ(counts[0].msi));
	if (strcmp(mode, "keep") || posted)
		printf("# host IRQ count %lld -> %lld not checked (mode=%s, IRTE %s): %s\n",
		       (long long)host_start, (long long)host_end, mode,
		       posted ? "posted" : "remapped", "posted interrupts skip the host");
	else
		klu_check(host_end - host_start == KLU_READ(rs.raised),
			  "host: want the device's IRQ count to grow by %u, saw %lld -> %lld (+%lld)",
			  KLU_READ(rs.raised), (long long)host_start, (long long)host_end,
			  (long long)(host_end - host_start));

	/* The guest finishes: two more timer ticks, then its report. */
	KLU_WRITE(p->stop, 1);
	start = klu_now_ns();
	while (!KLU_READ(run.done) && klu_now_ns() - start < WAIT_NS)
		usleep(1000);
	if (!KLU_READ(run.done))
		klu_fail("the vCPU did not finish within %llu s of the stop",
			 WAIT_NS / 1000000000ull);
	pthread_join(vcpu, NULL);
	klu_check(!run.res.done_status && run.res.nr_words == 1 && !counts[0].other,
		  "guest: want status 0, one result, no stray vector, saw status 0x%x, %d results, %u stray (%u timer ticks)",
		  run.res.done_status, run.res.nr_words, counts[0].other, counts[0].ticks);

	/* Closing the device, the irqfd and the VM leaves no consumer of ours. */
	klu_edu_close(&dev);
	close(efd);
	close(kvfio);
	klu_vm_destroy(run.vm);
	klu_check(wait_field("consumers", base_consumers, false),
		  "irqbypass: the VM's consumer goes: want consumers=%ld, saw %ld", base_consumers,
		  klu_thin_bypass_field("consumers"));
	close(irte_fd);
	{
		char path[64];
		int g;

		snprintf(path, sizeof(path), "/dev/vfio/%d", group_nr);
		g = open(path, O_RDWR | O_CLOEXEC);
		klu_check(g >= 0, "with the VM closed, VFIO group %d opens again: %s", group_nr,
			  g >= 0 ? "yes" : strerror(errno));
		if (g >= 0)
			close(g);
	}

	if (klu_nr_failed) {
		printf("not ok 1 - vm_irte: %d of %d checks failed\n", klu_nr_failed,
		       klu_nr_checks);
		return KSFT_FAIL;
	}
	printf("ok 1 - %s IRTE kept through %u moves; %u MSIs, none lost or doubled; %d checks\n",
	       posted ? "posted" : "remapped", 2 * rounds, KLU_READ(rs.raised), klu_nr_checks);
	return KSFT_PASS;
}
