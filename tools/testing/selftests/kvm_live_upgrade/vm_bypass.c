// SPDX-License-Identifier: GPL-2.0
/*
 * vm_bypass: kvm_thin keeps an irqfd's irq-bypass producer connected through live moves.
 *
 * The test's VM (in-kernel irqchip; its guest does rounds of port-I/O echoes, each sum
 * checked, in a vCPU thread that runs throughout) has NR_PROD irqfds on IOAPIC pins
 * (KVM's default routing, no MSI route, so that on a posted-interrupt host no IRTE is
 * touched for the synthetic host irq 0) and one more irqfd; the klu_bypass_producer
 * module registers a producer on each of the NR_PROD eventfds and on one with no irqfd.
 * Then, from /sys/kernel/kvm_thin/irqbypass, the VM's last_move and the producers' log:
 *   1. the producers connect (stop, add_consumer, start each; add +NR_PROD);
 *   2. ROUND_TRIPS round trips of moves between cores A and B: with mode=keep each move
 *      saves and restores each connection and the producers see nothing; with
 *      mode=fallback (posted interrupts) each is disconnected and connected again;
 *   3. moves made to fail at commit (fail_move_step=8) and at the irqfds' attach
 *      (fail_move_step=9, after the descriptors were handed over) leave the VM on A
 *      and (keep) hand the connections back without a disconnect;
 *   4. the connections are live: a producer unregistered and registered again;
 *   5. the guest's results; closing the VM disconnects its irqfds (del +NR_PROD).
 * Where moves hand VMX posted-interrupt descriptors over (irqbypass says posting=yes
 * or pi=always, on a VMX host), each move must hand the vCPU's over (pi_handed +1,
 * last_move pi_handed=1) and the move failed at step 9 must hand it back
 * (pi_returned +1); elsewhere neither may change.
 * Each check prints what it wanted and what it saw.  The counters are host-wide: run it
 * alone.  Skips without /dev/kvm, kvm_thin's irqbypass file, two cores or the module.
 *
 * Usage: vm_bypass [-a TAG] [-b TAG]: cores A (default: the VM's) and B (default: the
 * first other one by name).
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "klu_thin.h"
#include "klu_vm.h"

#define BP_DEV		"/dev/klu_bypass_producer"
#define FAIL_STEP	"/sys/module/kvm_thin/parameters/fail_move_step"

#define NR_PROD		3		/* producers on irqfds */
#define NR_IDS		(NR_PROD + 1)	/* and one on an eventfd with no irqfd */
#define ROUND_TRIPS	3
#define GSI_FIRST	5		/* NR_PROD irqfds from here, IOAPIC pins */
#define GSI_LONE	10		/* the irqfd with no producer */
#define ECHOES		200		/* port-I/O round trips per guest round */
#define GUEST_WAIT_NS	60000000000ull

/* klu_bypass_producer's interface (see its header comment). */
struct klu_bp_add {
	int32_t fd;
	int32_t irq;
};

#define KLU_BP_ADD	_IOW(0xbb, 1, struct klu_bp_add)
#define KLU_BP_DEL	_IO(0xbb, 2)

enum { C_CONSUMERS, C_CONNECTED, C_PARKED, C_ADD, C_DEL, C_SAVE, C_RESTORE, C_FALLBACK,
	C_ORPHANED, C_PI_HANDED, C_PI_RETURNED, NR_C };

static const char *const cnames[NR_C] = {
	"consumers", "connected", "parked", "add", "del", "save", "restore", "fallback",
	"orphaned", "pi_handed", "pi_returned",
};

#define C_TOTALS	C_ADD	/* from here on, totals: wanted and shown as changes */
#define ANY		LONG_MIN

struct counters {
	char mode[16], posting[8], pi[16];
	long v[NR_C];
};

struct guest {
	struct klu_vm *vm;
	unsigned int stop, rounds, bad, bad_sum;	/* KLU_READ/KLU_WRITE */
};

static int vm_id, dev = -1, fail_step_armed;
static unsigned int next_seq;
static struct counters cur;	/* the counters after the last check */
static struct guest guest;
static bool keep;		/* mode=keep, else fallback */
static int pi_moved;		/* descriptors a move hands over: the VM's vCPUs, or 0 */

/* fail_move_step := @step; armed until 0 was written. */
static int set_fail_step(int step)
{
	char s[16];
	int err;

	snprintf(s, sizeof(s), "%d\n", step);
	fail_step_armed = 1;
	err = klu_write_file(FAIL_STEP, s);
	fail_step_armed = step || err;
	return err;
}

static void reset_fail_step(void)
{
	if (fail_step_armed)
		set_fail_step(0);
}

/* The value of " @name=" in @line (which starts with a space), by @fmt. */
static void field(const char *line, const char *name, const char *fmt, void *to)
{
	char key[32];
	const char *p;

	snprintf(key, sizeof(key), " %s=", name);
	p = strstr(line, key);
	if (!p || sscanf(p + strlen(key), fmt, to) != 1)
		klu_fail(KLU_THIN "/irqbypass: no %s in '%s'", name, line + 1);
}

static void read_counters(struct counters *c)
{
	char line[512];
	int i;

	line[0] = ' ';
	if (!klu_read_line(KLU_THIN "/irqbypass", line + 1, sizeof(line) - 1))
		klu_fail("cannot read " KLU_THIN "/irqbypass: %s", strerror(errno));
	field(line, "mode", "%15s", c->mode);
	field(line, "posting", "%7s", c->posting);
	field(line, "pi", "%15s", c->pi);
	for (i = 0; i < NR_C; i++)
		field(line, cnames[i], "%ld", &c->v[i]);
}

/* Does this host have VMX (Intel), whose cores hand descriptors over? */
static bool host_vmx(void)
{
	char line[4096];
	bool vmx = false;
	FILE *f = fopen("/proc/cpuinfo", "r");

	while (f && !vmx && fgets(line, sizeof(line), f))
		vmx = !strncmp(line, "flags", 5) && strstr(line, " vmx");
	if (f)
		fclose(f);
	return vmx;
}

/* last_move's pi_handed against @want. */
static void check_pi_last_move(const char *when, int want)
{
	long saw = klu_thin_last_move_field(vm_id, "pi_handed");

	klu_check(saw == want, "%s: last_move want pi_handed=%d, saw %ld", when, want, saw);
}

/*
 * The counters now against @want: consumers, connected and parked as values, the totals
 * as changes since cur (ANY: not checked).  cur becomes what was read.
 */
static bool check_counters(const char *when, const long want[NR_C])
{
	char w[256] = "", s[256] = "";
	struct counters now;
	size_t wl = 0, sl = 0;
	long saw;
	bool ok;
	int i;

	read_counters(&now);
	ok = !strcmp(now.mode, cur.mode);
	for (i = 0; i < NR_C; i++) {
		const char *f = i < C_TOTALS ? " %s=%ld" : " %s%+ld";

		saw = now.v[i] - (i < C_TOTALS ? 0 : cur.v[i]);
		if (want[i] == ANY)
			wl += snprintf(w + wl, sizeof(w) - wl, " %s%s*", cnames[i],
				       i < C_TOTALS ? "=" : "+");
		else
			wl += snprintf(w + wl, sizeof(w) - wl, f, cnames[i], want[i]);
		sl += snprintf(s + sl, sizeof(s) - sl, f, cnames[i], saw);
		ok &= want[i] == ANY || want[i] == saw;
	}
	ok = klu_check(ok, "%s: irqbypass want mode=%s%s, saw mode=%s%s", when, cur.mode, w,
		       now.mode, s);
	cur = now;
	return ok;
}

/* Consumers and connected changed by @cons and @conn, none parked, the totals' changes. */
static void want_of(long want[NR_C], long cons, long conn, long add, long del, long save,
		    long restore, long fallback)
{
	want[C_CONSUMERS] = cur.v[C_CONSUMERS] + cons;
	want[C_CONNECTED] = cur.v[C_CONNECTED] + conn;
	want[C_PARKED] = 0;
	want[C_ADD] = add;
	want[C_DEL] = del;
	want[C_SAVE] = save;
	want[C_RESTORE] = restore;
	want[C_FALLBACK] = fallback;
	want[C_ORPHANED] = 0;
	want[C_PI_HANDED] = 0;
	want[C_PI_RETURNED] = 0;
}

/* Append @s to @buf, space-separated. */
static void append(char *buf, size_t size, const char *s)
{
	size_t l = strlen(buf);

	snprintf(buf + l, size - l, "%s%s", l ? " " : "", s);
}

/*
 * The producers' callbacks since the last read, per producer id (stop and start left
 * out if @add_del_only); @other gets those of unknown ids.  Returns how many events the
 * module dropped (gaps in the sequence numbers).
 */
static unsigned int read_log(char ops[NR_IDS][256], char *other, bool add_del_only)
{
	unsigned int seq, id, lost = 0;
	char buf[4096], op[32], *line, *save;
	ssize_t n;

	memset(ops, 0, NR_IDS * sizeof(ops[0]));
	other[0] = 0;
	while ((n = read(dev, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = 0;
		for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			if (sscanf(line, "%u %u %31s", &seq, &id, op) != 3)
				klu_fail(BP_DEV ": cannot parse '%s'", line);
			lost += seq - next_seq;
			next_seq = seq + 1;
			if (add_del_only && (!strcmp(op, "stop") || !strcmp(op, "start")))
				continue;
			if (id < NR_IDS)
				append(ops[id], 256, op);
			else
				append(other, 256, line);
		}
	}
	if (n < 0)
		klu_fail("read " BP_DEV ": %s", strerror(errno));
	return lost;
}

#define RECONNECT	"del_consumer add_consumer"
#define MAYBE		"none or " RECONNECT

/* Each producer's new callbacks against @want[id] ("": none; NULL: MAYBE). */
static bool check_log(const char *when, const char *const want[NR_IDS], bool add_del_only)
{
	char ops[NR_IDS][256], other[256], w[512] = "", s[1400] = "";
	unsigned int lost = read_log(ops, other, add_del_only);
	bool ok = !lost && !other[0];
	int i;

	for (i = 0; i < NR_IDS; i++) {
		const char *want_i = want[i] ? want[i] : MAYBE;

		ok &= want[i] ? !strcmp(ops[i], want[i]) : !ops[i][0] || !strcmp(ops[i], RECONNECT);
		snprintf(w + strlen(w), sizeof(w) - strlen(w), "%s%d: %s", i ? "; " : "", i,
			 *want_i ? want_i : "-");
		snprintf(s + strlen(s), sizeof(s) - strlen(s), "%s%d: %s", i ? "; " : "", i,
			 ops[i][0] ? ops[i] : "-");
	}
	return klu_check(ok, "%s: producer callbacks%s want {%s}, saw {%s}%s%s, %u dropped",
			 when, add_del_only ? " (add/del)" : "", w, s,
			 other[0] ? ", unknown ids: " : "", other, lost);
}

/* @conn for the producers on irqfds, @lone for the one without. */
static void want_ops(const char *want[NR_IDS], const char *conn, const char *lone)
{
	int i;

	for (i = 0; i < NR_PROD; i++)
		want[i] = conn;
	want[NR_PROD] = lone;
}

static int add_producer(int efd)
{
	struct klu_bp_add arg = { .fd = efd, .irq = 0 };

	return ioctl(dev, KLU_BP_ADD, &arg);
}

/* The guest: rounds of ECHOES port-I/O echoes, each round's sum checked, until stop. */
static void *guest_thread(void *arg)
{
	struct guest *g = arg;
	uint32_t want = ECHOES * (ECHOES - 1) / 2;
	struct klu_result res;

	while (!KLU_READ(g->stop)) {
		klu_vcpu_restart(g->vm, 0);
		klu_vcpu_run_to_done(g->vm, 0, &res);
		if (res.done_status || res.nr_words != 1 || res.words[0] != want) {
			KLU_WRITE(g->bad_sum, res.words[0]);
			KLU_WRITE(g->bad, g->bad + 1);
		}
		KLU_WRITE(g->rounds, g->rounds + 1);
	}
	return NULL;
}

/* The guest completes a round after @when. */
static bool check_guest_runs(const char *when)
{
	unsigned int r = KLU_READ(guest.rounds);
	uint64_t start = klu_now_ns();

	while (KLU_READ(guest.rounds) == r && klu_now_ns() - start < GUEST_WAIT_NS)
		usleep(1000);
	return klu_check(KLU_READ(guest.rounds) > r,
			 "%s: guest want a round done within %llu s, saw %u (after %.3f s)", when,
			 GUEST_WAIT_NS / 1000000000ull, KLU_READ(guest.rounds) - r,
			 (klu_now_ns() - start) / 1e9);
}

/* One live move, which must succeed, and all it must (and must not) do. */
static void move_checked(int n, const char *from, const char *to)
{
	const char *want_log[NR_IDS];
	long want[NR_C];
	char when[128], core[256];
	int err;

	snprintf(when, sizeof(when), "move %d (%s -> %s)", n, from, to);
	err = klu_thin_move(vm_id, to);
	klu_check(!err, "%s: write '%d %s' to " KLU_THIN "/move: want success, saw %s", when,
		  vm_id, to, err ? strerror(err) : "success");
	klu_thin_vm_file(vm_id, "core", core, sizeof(core));
	klu_check(!strcmp(core, to), "%s: core want %s, saw %s", when, to, core);
	if (keep)
		want_of(want, 0, 0, 0, 0, NR_PROD, NR_PROD, 0);
	else
		want_of(want, 0, 0, NR_PROD, NR_PROD, 0, 0, NR_PROD);
	want[C_PI_HANDED] = pi_moved;
	check_counters(when, want);
	want_ops(want_log, keep ? "" : RECONNECT, "");
	check_log(when, want_log, !keep);
	klu_thin_check_last_move(vm_id, when, "ok", from, to, keep ? NR_PROD : 0,
				 keep ? 0 : NR_PROD);
	check_pi_last_move(when, pi_moved);
	check_guest_runs(when);
}

/*
 * A move to @to made to fail at @step: 8 (commit, before the descriptors are handed
 * over) or 9 (attaching the irqfds, after): the VM stays on @from.
 */
static void failed_move(const char *from, const char *to, int step)
{
	const char *want_log[NR_IDS];
	struct counters before = cur;
	long want[NR_C];
	int err, reset_err;
	char core[256], when[64];

	snprintf(when, sizeof(when), "move failed at step %d", step);
	err = set_fail_step(step);
	if (!klu_check(!err, "%s: write %d to " FAIL_STEP ": want success, saw %s", when,
		       step, err ? strerror(err) : "success"))
		return;
	err = klu_thin_move(vm_id, to);
	reset_err = set_fail_step(0);
	klu_check(!reset_err, "%s: write 0 to " FAIL_STEP ": want success, saw %s", when,
		  reset_err ? strerror(reset_err) : "success");
	klu_check(err, "%s: write '%d %s' to " KLU_THIN "/move: want an error, saw %s", when,
		  vm_id, to, err ? strerror(err) : "success");
	klu_thin_vm_file(vm_id, "core", core, sizeof(core));
	klu_check(!strcmp(core, from), "%s: core want %s, saw %s", when, from, core);
	klu_thin_check_last_move(vm_id, when, "failed", from, to, -1, 0);
	check_pi_last_move(when, 0);
	if (keep) {
		want_of(want, 0, 0, 0, 0, NR_PROD, NR_PROD, 0);
		want[C_PI_HANDED] = step == 9 ? pi_moved : 0;
		want[C_PI_RETURNED] = step == 9 ? pi_moved : 0;
		check_counters(when, want);
		want_ops(want_log, "", "");
	} else {
		/* Disconnected and connected again, or not at all. */
		want_of(want, 0, 0, ANY, ANY, 0, 0, ANY);
		check_counters(when, want);
		klu_check(cur.v[C_ADD] - before.v[C_ADD] == cur.v[C_DEL] - before.v[C_DEL],
			  "%s: as many adds as dels: want add+N del+N, saw add%+ld del%+ld", when,
			  cur.v[C_ADD] - before.v[C_ADD], cur.v[C_DEL] - before.v[C_DEL]);
		want_ops(want_log, NULL, "");
	}
	check_log(when, want_log, !keep);
	check_guest_runs(when);
}

int main(int argc, char **argv)
{
	char a[256] = "", b[256] = "";
	int efd[NR_IDS + 1], opt, i, n, err, ids[NR_IDS];
	const char *want_log[NR_IDS];
	struct counters base;
	pthread_t thread;
	long want[NR_C];
	uint64_t start;

	while ((opt = getopt(argc, argv, "a:b:")) != -1) {
		switch (opt) {
		case 'a':
			snprintf(a, sizeof(a), "%s", optarg);
			break;
		case 'b':
			snprintf(b, sizeof(b), "%s", optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-a TAG] [-b TAG]\n", argv[0]);
			return KSFT_FAIL;
		}
	}
	printf("TAP version 13\n1..1\n");
	fflush(stdout);
	if (access("/dev/kvm", F_OK))
		klu_skip("no /dev/kvm (no KVM module loaded, or no VMX/SVM)");
	if (access(KLU_THIN "/irqbypass", F_OK))
		klu_skip("no " KLU_THIN "/irqbypass (no kvm_thin, or one without it)");
	n = klu_thin_cores("", NULL, 0);
	if (n < 2)
		klu_skip("%d core(s) loaded, a live move needs two (kvm-upgrade load <tag>)", n);
	if (access(BP_DEV, F_OK))
		klu_skip("no " BP_DEV ": klu_bypass_producer module not loaded");
	dev = open(BP_DEV, O_RDWR | O_CLOEXEC);
	if (dev < 0)
		klu_fail("open " BP_DEV ": %s", strerror(errno));
	atexit(reset_fail_step);
	read_counters(&base);
	cur = base;
	keep = !strcmp(base.mode, "keep");
	if (!keep && strcmp(base.mode, "fallback"))
		klu_fail(KLU_THIN "/irqbypass: mode '%s', want keep or fallback", base.mode);
	/* One vCPU; VMX cores hand its descriptor over where the IOMMU posts, or always. */
	if (keep && host_vmx() &&
	    (!strcmp(base.posting, "yes") || !strcmp(base.pi, "always")))
		pi_moved = 1;
	printf("# irqbypass mode=%s posting=%s pi=%s: a move %s%s\n", base.mode, base.posting,
	       base.pi, keep ? "hands each connection over" :
	       "disconnects and connects each again",
	       pi_moved ? ", and the vCPU's posted-interrupt descriptor" : "");

	/* The VM, on core A; and core B. */
	guest.vm = klu_vm_new(KLU_DATA_GPA, 1, KLU_VM_IRQCHIP);
	if (ioctl(guest.vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQFD) <= 0)
		klu_skip("KVM has no irqfd (KVM_CAP_IRQFD)");
	vm_id = klu_thin_vm_id();
	if (vm_id < 0)
		klu_fail("no VM of pid %d in " KLU_THIN "/vms", getpid());
	klu_thin_pick_cores(vm_id, a, b, sizeof(a));
	printf("# VM %d on core %s; moves go to %s and back\n", vm_id, a, b);

	*klu_vm_params(guest.vm) = (struct klu_params) {
		.mode = KLU_MODE_EXITS,
		.iterations = ECHOES,
		.exits = KLU_EXITS_PIO,
	};
	if (pthread_create(&thread, NULL, guest_thread, &guest))
		klu_fail("cannot start the vCPU thread");
	check_guest_runs("start");

	/*
	 * Eventfds: NR_PROD with an irqfd and a producer, efd[NR_PROD] with a producer
	 * only, efd[NR_IDS] with an irqfd only.  The irqfds are on IOAPIC pins.
	 */
	for (i = 0; i <= NR_IDS; i++) {
		struct kvm_irqfd irqfd = { .gsi = i < NR_PROD ? GSI_FIRST + i : GSI_LONE };

		efd[i] = eventfd(0, EFD_CLOEXEC);
		if (efd[i] < 0)
			klu_fail("eventfd: %s", strerror(errno));
		irqfd.fd = efd[i];
		if (i != NR_PROD && ioctl(guest.vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
			klu_fail("KVM_IRQFD on GSI %u: %s", irqfd.gsi, strerror(errno));
	}
	want_of(want, NR_PROD + 1, 0, 0, 0, 0, 0, 0);
	check_counters("irqfds", want);

	for (i = 0; i < NR_IDS; i++) {
		ids[i] = add_producer(efd[i]);
		klu_check(ids[i] == i, "producer %d: KLU_BP_ADD want id %d, saw %d%s%s", i, i,
			  ids[i], ids[i] < 0 ? ": " : "", ids[i] < 0 ? strerror(errno) : "");
	}
	want_of(want, 0, NR_PROD, NR_PROD, 0, 0, 0, 0);
	check_counters("producers", want);
	want_ops(want_log, "stop add_consumer start", "");
	check_log("producers", want_log, false);

	for (i = 0; i < ROUND_TRIPS; i++) {
		move_checked(2 * i + 1, a, b);
		move_checked(2 * i + 2, b, a);
	}
	if (klu_thin_fault_injection()) {
		failed_move(a, b, 8);
		failed_move(a, b, 9);
	} else {
		printf("# kvm_thin was loaded without fault_injection=1: no failed moves\n");
	}

	/* The connections are live: producer 0 goes and comes back. */
	err = ioctl(dev, KLU_BP_DEL, 0) ? errno : 0;
	klu_check(!err, "producer 0: KLU_BP_DEL want success, saw %s",
		  err ? strerror(err) : "success");
	want_of(want, 0, -1, 0, 1, 0, 0, 0);
	check_counters("producer 0 unregistered", want);
	want_ops(want_log, "", "");
	want_log[0] = "stop del_consumer start";
	check_log("producer 0 unregistered", want_log, false);
	ids[0] = add_producer(efd[0]);
	klu_check(ids[0] == 0, "producer 0 again: KLU_BP_ADD want id 0, saw %d%s%s", ids[0],
		  ids[0] < 0 ? ": " : "", ids[0] < 0 ? strerror(errno) : "");
	want_of(want, 0, 1, 1, 0, 0, 0, 0);
	check_counters("producer 0 registered again", want);
	want_log[0] = "stop add_consumer start";
	check_log("producer 0 registered again", want_log, false);

	/* The guest's results. */
	KLU_WRITE(guest.stop, 1);
	pthread_join(thread, NULL);
	klu_check(guest.rounds && !guest.bad,
		  "guest: want every round's echo sum %u, saw %u rounds, %u wrong (last 0x%x)",
		  ECHOES * (ECHOES - 1) / 2, guest.rounds, guest.bad, guest.bad_sum);

	/* Closing the VM disconnects its irqfds (KVM tears them down from a workqueue). */
	klu_vm_destroy(guest.vm);
	start = klu_now_ns();
	while (klu_now_ns() - start < 5000000000ull) {
		struct counters now;

		read_counters(&now);
		if (now.v[C_CONSUMERS] <= base.v[C_CONSUMERS])
			break;
		usleep(10000);
	}
	want_of(want, base.v[C_CONSUMERS] - cur.v[C_CONSUMERS],
		base.v[C_CONNECTED] - cur.v[C_CONNECTED], 0, NR_PROD, 0, 0, 0);
	check_counters("VM closed", want);
	want_ops(want_log, "stop del_consumer start", "");
	check_log("VM closed", want_log, false);
	close(dev);
	for (i = 0; i <= NR_IDS; i++)
		close(efd[i]);
	want_of(want, base.v[C_CONSUMERS] - cur.v[C_CONSUMERS],
		base.v[C_CONNECTED] - cur.v[C_CONNECTED], 0, 0, 0, 0, 0);
	check_counters("producers closed", want);

	if (klu_nr_failed) {
		printf("not ok 1 - vm_bypass: %d of %d checks failed\n", klu_nr_failed,
		       klu_nr_checks);
		return KSFT_FAIL;
	}
	printf("ok 1 - irq bypass kept through %d moves, two failed (mode=%s, %s), %d checks\n",
	       2 * ROUND_TRIPS, cur.mode,
	       pi_moved ? "descriptors handed over" : "no descriptor handover",
	       klu_nr_checks);
	return KSFT_PASS;
}
