// SPDX-License-Identifier: GPL-2.0
/*
 * vfio_keepalive_test: the vfio-keepalive driver, end to end, on the QEMU "edu" PCI
 * device (1234:11e8: a 1 MiB MMIO BAR0, one MSI vector, a 4 KiB DMA buffer).
 *
 * One subcommand per run, each a test; exit status 0 pass, 1 fail, 4 skip.
 *   info             VFIO_KEEPALIVE_GET_INFO: api_version, argsz and flags checks.
 *   handover [kill|exit]
 *                    Owner A arms keepalive, starts an edu->RAM DMA, raises one MSI and
 *                    dies (SIGKILL, or _exit(0) with everything open).  A new process B
 *                    reclaims the device with the token and finds it as A left it: same
 *                    host IRQ, MSI on, bus master on, the DMA's data in the memfd and both
 *                    interrupts pending on the eventfd.  B re-owns the DMA mapping with
 *                    VFIO_DMA_{UN,}MAP_FLAG_VADDR, runs DMA and an MSI both ways, disarms
 *                    and closes; the device is then released the stock way.
 *   wrongtoken       RECLAIM error paths (EBUSY, EACCES, EPERM, ENOENT, ENOSPC), a token
 *                    of the caller's own at ARM (EINVAL: the driver makes it), the token
 *                    a RECLAIM gives next (the spent one: EACCES), RECLAIM with
 *                    VFIO_KEEPALIVE_RECLAIM_DISARM, and a device not kept, which an
 *                    unprivileged caller must not tell from one it may not reclaim
 *                    (EPERM; root: ENOENT).
 *   notoken          An owner that never armed dies: the device is closed as usual.
 *   timeout          Nobody reclaims within the ARM timeout: the device is released.
 *   intx             ARM is refused while INTx is on; INTx cannot be enabled while armed.
 *   unbind           Unbinding the driver while the device has no owner releases it.
 *   stock DRIVER     A plain VFIO user's cycle on DRIVER (vfio-pci or vfio-keepalive),
 *                    ending in a one-line summary that must read the same for both.
 *
 * Every check prints what it expected and what it saw, in lines starting with "# ".
 * The program binds the device to the driver a test needs itself (driver_override),
 * and finds the edu device by its IDs unless -d names one.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <grp.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <linux/pci_regs.h>
#include <linux/types.h>
#include <linux/vfio.h>
#include <linux/vfio_keepalive.h>

#define KSFT_PASS	0
#define KSFT_FAIL	1
#define KSFT_SKIP	4

#define MISC_DEV	"/dev/vfio-keepalive"
#define KA_DRIVER	"vfio-keepalive"
#define PCI_DEVICES	"/sys/bus/pci/devices"

/* The edu device: registers of BAR0, 4-byte accesses only. */
#define EDU_VENDOR		0x1234
#define EDU_DEVICE		0x11e8
#define EDU_ID			0x00
#define EDU_ID_VALUE		0x010000ed
#define EDU_LIVENESS		0x04	/* reads back the complement of what was written */
#define EDU_IRQ_STATUS		0x24
#define EDU_IRQ_RAISE		0x60	/* status |= value; one MSI per write */
#define EDU_IRQ_ACK		0x64	/* status &= ~value */
#define EDU_DMA_SRC		0x80
#define EDU_DMA_DST		0x88
#define EDU_DMA_COUNT		0x90
#define EDU_DMA_CMD		0x98
#define EDU_DMA_RUN		0x1
#define EDU_DMA_TO_RAM		0x2	/* direction edu->RAM; clear: RAM->edu */
#define EDU_DMA_IRQ		0x4	/* raise EDU_STATUS_DMA on completion */
#define EDU_STATUS_RAISE	0x1	/* what this program writes to EDU_IRQ_RAISE */
#define EDU_STATUS_DMA		0x100
#define EDU_BUF			0x40000	/* edu's DMA buffer in its own address space */

/* The one DMA mapping: a 2 MiB memfd at IOVA 1 MiB (edu's DMA mask is 28 bits). */
#define DMA_IOVA	0x100000ull
#define DMA_SIZE	(2ull << 20)
#define XFER		1024	/* bytes per DMA: stays inside edu's first 2 KiB */

/* Offsets in the memfd, and edu buffer addresses, the tests use. */
#define OFF_A_SRC	0x0000	/* handover: A's pattern, RAM->edu before ARM */
#define OFF_A_DST	0x1000	/* handover: edu->RAM while nobody owns the device */
#define OFF_B_SRC	0x2000	/* handover: B's pattern, RAM->edu */
#define OFF_B_DST	0x3000	/* handover: B's pattern back, edu->RAM */
#define OFF_S_SRC	0x4000	/* stock */
#define OFF_S_DST	0x5000
#define EDU_BUF_B	(EDU_BUF + 0x400)

#define IRQ_WAIT_MS	5000	/* an interrupt that does not come within this is lost */
#define DMA_WAIT_MS	5000	/* edu takes 100 ms of virtual time per transfer */
#define QUIET_MS	300	/* no further interrupt may come within this */
#define GONE_WAIT_MS	3000	/* the vfio-msi line of a closed device goes within this */
#define CHILD_WAIT_MS	120000
#define UNBIND_WAIT_MS	20000
#define HANDOVER_GAP_MS	1500	/* handover: how long nobody owns the device */
#define TIMEOUT_DEF_MS	1500	/* timeout: ARM timeout unless -t says otherwise */
#define MAX_IRQS	4	/* room offered at RECLAIM */
#define MAX_RANGES	4
#define MSG_MAGIC	0x766b6131

#define OPEN_MSI	0x1	/* an eventfd on MSI vector 0 */
#define OPEN_MASTER	0x2	/* PCI_COMMAND memory and bus master on */
#define OPEN_NEED_VADDR	0x4	/* the container must support VFIO_UPDATE_VADDR */

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))

#ifndef __printf
#define __printf(a, b)	__attribute__((format(printf, a, b)))
#endif

/* A VFIO user's view of the edu device. */
struct vdev {
	int container;
	int group;
	int device;
	int efd;		/* eventfd of MSI vector 0 (or INTx) */
	int memfd;
	int owner;		/* owner_fd from ARM or RECLAIM */
	uint8_t *mem;		/* DMA_SIZE bytes at DMA_IOVA */
	uint64_t bar0;		/* region offsets in the device file */
	uint64_t cfg;
};

/* What a dying owner tells the parent through a pipe, just before it dies. */
struct owner_msg {
	uint32_t magic;
	uint32_t seed;			/* handover: pattern at OFF_A_SRC, DMAed to edu */
	uint8_t token[VFIO_KEEPALIVE_TOKEN_SIZE];
	int32_t irq;			/* host IRQ of vfio-msi[0] */
	uint32_t dma_running;		/* handover: edu->RAM DMA still running at death */
	uint64_t irq_count;		/* its /proc/interrupts count when A looked */
};

/* RECLAIM's argument and the arrays it points to. */
struct reclaimed {
	struct vfio_keepalive_reclaim r;
	__s32 irq_fds[MAX_IRQS];
	__u64 irq_counts[MAX_IRQS];
	struct vfio_keepalive_range ranges[MAX_RANGES];
};

/* What the stock user saw, for the parent's summary line. */
struct stock_result {
	uint32_t dma_ok;
	uint32_t raise_irqs;
};

static const char *role = "main";
static int failures;
static char skip_reason[256];
static char bdf[VFIO_KEEPALIVE_NAME_SIZE];
static const char *opt_bdf;
static uint32_t opt_timeout_ms = 3000;
static bool opt_timeout_set;

/* ---- reporting ---- */

static __printf(1, 2) void note(const char *fmt, ...)
{
	va_list ap;

	printf("# %s: ", role);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static bool vcheck(bool ok, bool quiet, const char *fmt, va_list ap)
{
	if (!ok)
		failures++;
	if (ok && quiet)
		return ok;
	printf("# %s: %s: ", role, ok ? "pass" : "FAIL");
	vprintf(fmt, ap);
	putchar('\n');
	return ok;
}

/* A check: printed whatever its outcome. */
static __printf(2, 3) bool expect(bool ok, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ok = vcheck(ok, false, fmt, ap);
	va_end(ap);
	return ok;
}

/* A step the test depends on: printed only when it fails. */
static __printf(2, 3) bool need(bool ok, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ok = vcheck(ok, true, fmt, ap);
	va_end(ap);
	return ok;
}

static __printf(1, 2) int skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(skip_reason, sizeof(skip_reason), fmt, ap);
	va_end(ap);
	note("SKIP: %s", skip_reason);
	return KSFT_SKIP;
}

static const char *ename(int e)
{
	const char *s = e ? strerrorname_np(e) : "0";

	return s ? s : "E?";
}

/* Call these right after the call whose result they take: they read errno. */
static bool need_ok(long ret, const char *what)
{
	int e = errno;

	return need(ret >= 0, "%s: expected success, saw -1/%s (%s)", what, ename(e), strerror(e));
}

static bool expect_ok(long ret, const char *what)
{
	int e = errno;

	if (ret >= 0)
		return expect(true, "%s: expected success, saw %ld", what, ret);
	return expect(false, "%s: expected success, saw -1/%s (%s)", what, ename(e), strerror(e));
}

static bool expect_err(long ret, int want, const char *what)
{
	int e = errno;

	if (ret >= 0)
		return expect(false, "%s: expected -1/%s, saw %ld (success)", what, ename(want),
			      ret);
	return expect(e == want, "%s: expected -1/%s, saw -1/%s", what, ename(want), ename(e));
}

/* ---- time, files, processes ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ull + ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* 0, or -errno. */
static int write_file(const char *path, const char *s)
{
	size_t len = strlen(s);
	ssize_t n;
	int fd, e;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, s, len);
	e = errno;
	close(fd);
	if (n < 0)
		return -e;
	return (size_t)n == len ? 0 : -EIO;
}

/* The file's first line, without its newline; its length, or -errno. */
static int read_line(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd, e;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	e = errno;
	close(fd);
	if (n < 0)
		return -e;
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return strlen(buf);
}

static void dev_path(char *out, size_t size, const char *name, const char *file)
{
	snprintf(out, size, PCI_DEVICES "/%s/%s", name, file);
}

/* The basename of a symlink of the device's sysfs directory; "" when it has none. */
static void dev_link(const char *file, char *out, size_t size)
{
	char path[PATH_MAX], target[PATH_MAX];
	const char *base;
	ssize_t n;

	out[0] = 0;
	dev_path(path, sizeof(path), bdf, file);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return;
	target[n] = 0;
	base = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
	if (strlen(base) < size)
		memcpy(out, base, strlen(base) + 1);
}

static int iommu_group(void)
{
	char grp[64];

	dev_link("iommu_group", grp, sizeof(grp));
	return grp[0] ? atoi(grp) : -1;
}

static void flush_output(void)
{
	fflush(stdout);
	fflush(stderr);
}

/* fork(); the child gets its role and its own count of failures. */
static pid_t spawn(const char *who)
{
	pid_t pid;

	flush_output();
	pid = fork();
	if (pid < 0) {
		need_ok(-1, "fork");
		return -1;
	}
	if (!pid) {
		role = who;
		failures = 0;
	}
	return pid;
}

/* The child's wait status, or -1 if it did not end within ms (it is then killed). */
static int wait_child(pid_t pid, unsigned int ms)
{
	uint64_t t0 = now_ms();
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return st;
		if (r < 0 && errno != EINTR) {
			need_ok(-1, "waitpid");
			return -1;
		}
		if (now_ms() - t0 > ms)
			break;
		sleep_ms(10);
	}
	note("child %d still running after %u ms: killing it", pid, ms);
	kill(pid, SIGKILL);
	/* A child stuck in the kernel may not die: do not wait for it forever. */
	for (t0 = now_ms(); now_ms() - t0 < 2000; sleep_ms(20))
		if (waitpid(pid, &st, WNOHANG) == pid)
			break;
	return -1;
}

static const char *status_str(int st, char *buf, size_t size)
{
	if (st < 0)
		snprintf(buf, size, "no end in time (killed)");
	else if (WIFEXITED(st))
		snprintf(buf, size, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, size, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(buf, size, "wait status 0x%x", st);
	return buf;
}

static bool expect_exit0(int st, const char *who)
{
	char buf[64];

	return expect(st >= 0 && WIFEXITED(st) && !WEXITSTATUS(st),
		      "%s: expected exit status 0, saw %s", who, status_str(st, buf, sizeof(buf)));
}

static bool expect_killed(int st, const char *who)
{
	char buf[64];

	return expect(st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
		      "%s: expected to die by SIGKILL, saw %s", who,
		      status_str(st, buf, sizeof(buf)));
}

static bool send_all(int fd, const void *buf, size_t len)
{
	ssize_t n = write(fd, buf, len);

	return need(n == (ssize_t)len, "pipe write: expected %zu bytes, saw %zd", len, n);
}

/* len bytes from a pipe within ms; false on EOF or timeout. */
static bool recv_all(int fd, void *buf, size_t len, unsigned int ms)
{
	uint64_t t0 = now_ms();
	size_t got = 0;

	while (got < len) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t el = now_ms() - t0;
		ssize_t n;

		if (el >= ms || poll(&p, 1, ms - el) <= 0)
			return false;
		n = read(fd, (char *)buf + got, len - got);
		if (n <= 0)
			return false;
		got += n;
	}
	return true;
}

static bool recv_msg(int fd, struct owner_msg *m)
{
	memset(m, 0, sizeof(*m));
	return recv_all(fd, m, sizeof(*m), CHILD_WAIT_MS) && m->magic == MSG_MAGIC;
}

/* ---- patterns and tokens ---- */

static void fill_pattern(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed ? seed : 0x9e3779b9;
	size_t i;

	for (i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = x >> 24;
	}
}

static bool expect_pattern(const uint8_t *p, size_t len, uint32_t seed, const char *what)
{
	uint8_t want[XFER];
	size_t i;

	fill_pattern(want, len, seed);
	for (i = 0; i < len; i++)
		if (p[i] != want[i])
			break;
	if (i == len)
		return expect(true, "%s: expected %zu bytes of pattern 0x%08x, saw all of them",
			      what, len, seed);
	return expect(false, "%s: expected %zu bytes of pattern 0x%08x, saw 0x%02x at byte %zu",
		      what, len, seed, p[i], i);
}

static uint32_t new_seed(void)
{
	return (uint32_t)getpid() * 2654435761u ^ (uint32_t)time(NULL) ^ (uint32_t)now_ms();
}

static bool random_token(uint8_t *tok)
{
	bool zero = true;
	ssize_t n;
	int fd, i;

	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (!need_ok(fd, "open /dev/urandom"))
		return false;
	do {
		n = read(fd, tok, VFIO_KEEPALIVE_TOKEN_SIZE);
		for (i = 0; n == VFIO_KEEPALIVE_TOKEN_SIZE && i < n; i++)
			if (tok[i])
				zero = false;
	} while (n == VFIO_KEEPALIVE_TOKEN_SIZE && zero);
	close(fd);
	return need(n == VFIO_KEEPALIVE_TOKEN_SIZE,
		    "read /dev/urandom: expected %d bytes, saw %zd", VFIO_KEEPALIVE_TOKEN_SIZE, n);
}

static const char *token_str(const uint8_t *tok, char *buf)
{
	int i;

	for (i = 0; i < VFIO_KEEPALIVE_TOKEN_SIZE; i++)
		sprintf(buf + 2 * i, "%02x", tok[i]);
	return buf;
}

/* ---- sysfs: the device, its driver, its physical config space ---- */

static bool is_edu(const char *name)
{
	char path[PATH_MAX], v[32], d[32];

	dev_path(path, sizeof(path), name, "vendor");
	if (read_line(path, v, sizeof(v)) <= 0)
		return false;
	dev_path(path, sizeof(path), name, "device");
	if (read_line(path, d, sizeof(d)) <= 0)
		return false;
	return strtoul(v, NULL, 0) == EDU_VENDOR && strtoul(d, NULL, 0) == EDU_DEVICE;
}

/* Sets bdf: -d's device, which must be an edu, or the first edu of the system. */
static int find_device(void)
{
	struct dirent *de;
	char path[PATH_MAX];
	DIR *dir;

	if (opt_bdf) {
		snprintf(bdf, sizeof(bdf), "%s%s", strchr(opt_bdf, ':') == strrchr(opt_bdf, ':') ?
			 "0000:" : "", opt_bdf);
		dev_path(path, sizeof(path), bdf, "");
		if (access(path, F_OK))
			return skip("no PCI device %s (no %s)", bdf, path);
		if (!is_edu(bdf))
			return skip("%s is not an edu device (%04x:%04x)", bdf, EDU_VENDOR,
				    EDU_DEVICE);
		return KSFT_PASS;
	}
	dir = opendir(PCI_DEVICES);
	if (!dir)
		return skip("no %s", PCI_DEVICES);
	while ((de = readdir(dir))) {
		if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof(bdf) ||
		    !is_edu(de->d_name))
			continue;
		memcpy(bdf, de->d_name, strlen(de->d_name) + 1);
		break;
	}
	closedir(dir);
	if (!bdf[0])
		return skip("no edu device (%04x:%04x) in %s", EDU_VENDOR, EDU_DEVICE,
			    PCI_DEVICES);
	return KSFT_PASS;
}

/*
 * Binds the device to drv: driver_override, unbind from the current driver if any,
 * drivers_probe; then the device's driver link must name drv.
 */
static int bind_driver(const char *drv)
{
	char path[PATH_MAX], cur[64];
	int ret;

	snprintf(path, sizeof(path), "/sys/bus/pci/drivers/%s", drv);
	if (access(path, F_OK))
		return skip("driver %s is not registered (no %s): its module is not loaded",
			    drv, path);
	dev_link("driver", cur, sizeof(cur));
	if (!strcmp(cur, drv)) {
		note("%s is bound to %s", bdf, drv);
		return KSFT_PASS;
	}
	note("binding %s to %s (now: %s)", bdf, drv, cur[0] ? cur : "no driver");
	dev_path(path, sizeof(path), bdf, "driver_override");
	ret = write_file(path, drv);
	if (!need(!ret, "write %s to %s: expected success, saw %s", drv, path, ename(-ret)))
		return KSFT_FAIL;
	if (cur[0]) {
		dev_path(path, sizeof(path), bdf, "driver/unbind");
		ret = write_file(path, bdf);
		if (!need(!ret, "write %s to %s: expected success, saw %s", bdf, path,
			  ename(-ret)))
			return KSFT_FAIL;
	}
	ret = write_file("/sys/bus/pci/drivers_probe", bdf);
	if (ret)
		note("write %s to /sys/bus/pci/drivers_probe: %s", bdf, ename(-ret));
	dev_link("driver", cur, sizeof(cur));
	if (!expect(!strcmp(cur, drv), "driver of %s after binding: expected %s, saw %s", bdf,
		    drv, cur[0] ? cur : "none"))
		return KSFT_FAIL;
	return KSFT_PASS;
}

/* The device's config space as the PCI core reads it (sysfs): the hardware's bits. */
static bool sysfs_config(uint8_t *cfg, size_t len)
{
	char path[PATH_MAX];
	ssize_t n;
	int fd;

	memset(cfg, 0, len);
	dev_path(path, sizeof(path), bdf, "config");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (!need_ok(fd, "open sysfs config"))
		return false;
	n = pread(fd, cfg, len, 0);
	close(fd);
	return need(n == (ssize_t)len, "read %s: expected %zu bytes, saw %zd", path, len, n);
}

static int sysfs_command(void)
{
	uint8_t cfg[PCI_STD_HEADER_SIZEOF];

	if (!sysfs_config(cfg, sizeof(cfg)))
		return -1;
	return cfg[PCI_COMMAND] | cfg[PCI_COMMAND + 1] << 8;
}

/* Offset of capability id in a 256-byte config space, or 0. */
static int find_cap(const uint8_t *cfg, uint8_t id)
{
	int pos, n;

	if (!(cfg[PCI_STATUS] & PCI_STATUS_CAP_LIST))
		return 0;
	pos = cfg[PCI_CAPABILITY_LIST] & ~3;
	for (n = 0; pos >= PCI_STD_HEADER_SIZEOF && pos < 0xfc && n < 48; n++) {
		if (cfg[pos] == id)
			return pos;
		pos = cfg[pos + PCI_CAP_LIST_NEXT] & ~3;
	}
	return 0;
}

/* The MSI enable bit of a config space's MSI capability: 1, 0, or -1 without one. */
static int msi_enable_bit(const uint8_t *cfg)
{
	int pos = find_cap(cfg, PCI_CAP_ID_MSI);

	if (!pos)
		return -1;
	return !!(cfg[pos + PCI_MSI_FLAGS] & PCI_MSI_FLAGS_ENABLE);
}

static int sysfs_msi_enabled(void)
{
	uint8_t cfg[256];

	if (!sysfs_config(cfg, sizeof(cfg)))
		return -1;
	return msi_enable_bit(cfg);
}

/* ---- /proc/interrupts ---- */

/* The vfio-msi[0] line of the device: 1 with its IRQ and count, 0 without, -1 on error. */
static int msi_line(int *irq, uint64_t *count)
{
	char needle[64], *line = NULL, *p, *end;
	int ncpu = 0, found = 0, i;
	size_t cap = 0;
	FILE *f;

	snprintf(needle, sizeof(needle), "vfio-msi[0](%s)", bdf);
	f = fopen("/proc/interrupts", "re");
	if (!need(f, "open /proc/interrupts: expected success, saw %s", ename(errno)))
		return -1;
	if (getline(&line, &cap, f) > 0)
		for (p = line; (p = strstr(p, "CPU")); p += 3)
			ncpu++;
	while (!found && getline(&line, &cap, f) > 0) {
		uint64_t sum = 0;
		long n;

		if (!strstr(line, needle))
			continue;
		n = strtol(line, &end, 10);
		if (end == line || *end != ':')
			continue;
		for (p = end + 1, i = 0; i < ncpu; i++, p = end) {
			sum += strtoull(p, &end, 10);
			if (end == p)
				break;
		}
		*irq = n;
		*count = sum;
		found = 1;
	}
	free(line);
	fclose(f);
	return found;
}

/* The device kept by keepalive: its vfio-msi line (same IRQ), bus master and MSI on. */
static void expect_kept(int irq_want, const char *when)
{
	uint64_t cnt = 0;
	int irq = -1, r, cmd, msi;

	r = msi_line(&irq, &cnt);
	expect(r == 1 && irq == irq_want,
	       "%s: vfio-msi[0](%s) in /proc/interrupts: expected IRQ %d, saw %s %d", when, bdf,
	       irq_want, r == 1 ? "IRQ" : "no line, lookup result", r == 1 ? irq : r);
	cmd = sysfs_command();
	expect(cmd >= 0 && (cmd & PCI_COMMAND_MASTER),
	       "%s: PCI_COMMAND in sysfs config: expected MASTER (0x4) set, saw 0x%04x", when, cmd);
	msi = sysfs_msi_enabled();
	expect(msi == 1, "%s: MSI enable in the MSI capability (sysfs config): expected 1, saw %d",
	       when, msi);
}

/* The device closed the stock way: its vfio-msi line goes, bus master is off. */
static void released_state(int *line, int *master)
{
	uint64_t t0 = now_ms(), cnt;
	int irq, r, cmd;

	while ((r = msi_line(&irq, &cnt)) == 1 && now_ms() - t0 < GONE_WAIT_MS)
		sleep_ms(50);
	*line = r;
	cmd = sysfs_command();
	*master = cmd < 0 ? -1 : !!(cmd & PCI_COMMAND_MASTER);
}

static void expect_released(const char *when)
{
	int line, master;

	released_state(&line, &master);
	expect(!line, "%s: vfio-msi[0](%s) in /proc/interrupts: expected no line, saw %s", when,
	       bdf, line == 1 ? "one" : line ? "an error" : "none");
	expect(!master, "%s: PCI_COMMAND MASTER (0x4) in sysfs config: expected clear, saw %s",
	       when, master == 1 ? "set" : master ? "an error" : "clear");
}

/* ---- VFIO ---- */

static void vdev_init(struct vdev *v)
{
	memset(v, 0, sizeof(*v));
	v->container = -1;
	v->group = -1;
	v->device = -1;
	v->efd = -1;
	v->memfd = -1;
	v->owner = -1;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void vdev_close(struct vdev *v)
{
	close_fd(&v->device);
	close_fd(&v->owner);
	close_fd(&v->efd);
	close_fd(&v->group);
	close_fd(&v->container);
	if (v->mem)
		munmap(v->mem, DMA_SIZE);
	v->mem = NULL;
	close_fd(&v->memfd);
}

static bool vdev_regions(struct vdev *v)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = VFIO_PCI_BAR0_REGION_INDEX };

	if (!need_ok(ioctl(v->device, VFIO_DEVICE_GET_REGION_INFO, &ri), "GET_REGION_INFO(BAR0)"))
		return false;
	if (!need(ri.size >= 1 << 20, "BAR0 size: expected 1 MiB, saw 0x%llx", ri.size))
		return false;
	v->bar0 = ri.offset;
	ri.index = VFIO_PCI_CONFIG_REGION_INDEX;
	if (!need_ok(ioctl(v->device, VFIO_DEVICE_GET_REGION_INFO, &ri), "GET_REGION_INFO(config)"))
		return false;
	v->cfg = ri.offset;
	return true;
}

/* BAR0 accesses; a failed one counts as a failure and reads as ~0. */
static uint32_t rd32(struct vdev *v, unsigned int off)
{
	uint32_t val = ~0u;
	ssize_t n = pread(v->device, &val, 4, v->bar0 + off);

	need(n == 4, "read BAR0+0x%x: expected 4 bytes, saw %zd (%s)", off, n, ename(errno));
	return n == 4 ? val : ~0u;
}

static void wr32(struct vdev *v, unsigned int off, uint32_t val)
{
	ssize_t n = pwrite(v->device, &val, 4, v->bar0 + off);

	need(n == 4, "write BAR0+0x%x: expected 4 bytes, saw %zd (%s)", off, n, ename(errno));
}

/* Config space through VFIO (partly virtualized by vfio-pci). */
static int cfg_rd16(struct vdev *v, unsigned int off)
{
	uint16_t val;
	ssize_t n = pread(v->device, &val, 2, v->cfg + off);

	if (!need(n == 2, "read config+0x%x: expected 2 bytes, saw %zd (%s)", off, n,
		  ename(errno)))
		return -1;
	return val;
}

static bool cfg_wr16(struct vdev *v, unsigned int off, uint16_t val)
{
	ssize_t n = pwrite(v->device, &val, 2, v->cfg + off);

	return need(n == 2, "write config+0x%x: expected 2 bytes, saw %zd (%s)", off, n,
		    ename(errno));
}

static bool set_master(struct vdev *v)
{
	int cmd = cfg_rd16(v, PCI_COMMAND);

	if (cmd < 0 || !cfg_wr16(v, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER))
		return false;
	cmd = cfg_rd16(v, PCI_COMMAND);
	return need(cmd >= 0 && (cmd & PCI_COMMAND_MASTER),
		    "PCI_COMMAND after setting MASTER: expected 0x4 set, saw 0x%04x", cmd);
}

static int set_irqs(struct vdev *v, uint32_t index, uint32_t flags, int fd)
{
	union {
		struct vfio_irq_set s;
		char buf[sizeof(struct vfio_irq_set) + sizeof(__s32)];
	} u;
	bool with_fd = flags & VFIO_IRQ_SET_DATA_EVENTFD;

	memset(&u, 0, sizeof(u));
	u.s.argsz = sizeof(u.s) + (with_fd ? sizeof(__s32) : 0);
	u.s.flags = flags;
	u.s.index = index;
	u.s.start = 0;
	u.s.count = with_fd ? 1 : 0;
	if (with_fd)
		memcpy(u.s.data, &fd, sizeof(fd));
	return ioctl(v->device, VFIO_DEVICE_SET_IRQS, &u.s);
}

static bool enable_msi(struct vdev *v)
{
	struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = VFIO_PCI_MSI_IRQ_INDEX };

	if (!need_ok(ioctl(v->device, VFIO_DEVICE_GET_IRQ_INFO, &ii), "GET_IRQ_INFO(MSI)") ||
	    !need(ii.count >= 1, "MSI vectors: expected 1, saw %u", ii.count))
		return false;
	v->efd = eventfd(0, EFD_CLOEXEC);
	if (!need_ok(v->efd, "eventfd"))
		return false;
	return need_ok(set_irqs(v, VFIO_PCI_MSI_IRQ_INDEX,
				VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, v->efd),
		       "SET_IRQS(MSI vector 0, eventfd)");
}

/*
 * The standard type1 sequence: container, group, 2 MiB memfd mapped at DMA_IOVA,
 * device; then, as how asks, MSI on an eventfd and bus mastering.
 */
static bool vfio_open(struct vdev *v, unsigned int how)
{
	struct vfio_iommu_type1_dma_map map = { .argsz = sizeof(map) };
	struct vfio_group_status gs = { .argsz = sizeof(gs) };
	uint32_t live = 0x5a5a0000u ^ (uint32_t)getpid();
	char path[64];
	int grp, ret;

	vdev_init(v);
	v->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (!need_ok(v->container, "open /dev/vfio/vfio"))
		goto fail;
	ret = ioctl(v->container, VFIO_GET_API_VERSION);
	if (!need(ret == VFIO_API_VERSION, "VFIO_GET_API_VERSION: expected %d, saw %d",
		  VFIO_API_VERSION, ret))
		goto fail;
	ret = ioctl(v->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU);
	if (!need(ret > 0, "CHECK_EXTENSION(TYPE1v2_IOMMU): expected 1, saw %d", ret))
		goto fail;
	grp = iommu_group();
	if (!need(grp >= 0, "IOMMU group of %s: expected one, saw none", bdf))
		goto fail;
	snprintf(path, sizeof(path), "/dev/vfio/%d", grp);
	v->group = open(path, O_RDWR | O_CLOEXEC);
	if (!need_ok(v->group, path))
		goto fail;
	if (!need_ok(ioctl(v->group, VFIO_GROUP_GET_STATUS, &gs), "GROUP_GET_STATUS") ||
	    !need(gs.flags & VFIO_GROUP_FLAGS_VIABLE,
		  "group %d status: expected VIABLE, saw flags 0x%x", grp, gs.flags))
		goto fail;
	if (!need_ok(ioctl(v->group, VFIO_GROUP_SET_CONTAINER, &v->container),
		     "GROUP_SET_CONTAINER") ||
	    !need_ok(ioctl(v->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU), "SET_IOMMU"))
		goto fail;
	/* type1 answers VFIO_UPDATE_VADDR only once it is the container's IOMMU */
	ret = ioctl(v->container, VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR);
	if ((how & OPEN_NEED_VADDR) &&
	    !need(ret > 0, "CHECK_EXTENSION(UPDATE_VADDR): expected 1, saw %d", ret))
		goto fail;
	v->memfd = memfd_create("vka-dma", MFD_CLOEXEC);
	if (!need_ok(v->memfd, "memfd_create") ||
	    !need_ok(ftruncate(v->memfd, DMA_SIZE), "ftruncate memfd"))
		goto fail;
	v->mem = mmap(NULL, DMA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, v->memfd, 0);
	if (v->mem == MAP_FAILED) {
		v->mem = NULL;
		need_ok(-1, "mmap memfd");
		goto fail;
	}
	map.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
	map.vaddr = (uintptr_t)v->mem;
	map.iova = DMA_IOVA;
	map.size = DMA_SIZE;
	if (!need_ok(ioctl(v->container, VFIO_IOMMU_MAP_DMA, &map), "IOMMU_MAP_DMA"))
		goto fail;
	v->device = ioctl(v->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (!need_ok(v->device, "GROUP_GET_DEVICE_FD") || !vdev_regions(v))
		goto fail;
	ret = rd32(v, EDU_ID);
	if (!need(ret == EDU_ID_VALUE, "edu id register: expected 0x%08x, saw 0x%08x",
		  EDU_ID_VALUE, ret))
		goto fail;
	wr32(v, EDU_LIVENESS, live);
	ret = rd32(v, EDU_LIVENESS);
	if (!need((uint32_t)ret == ~live, "edu liveness register: expected 0x%08x, saw 0x%08x",
		  ~live, ret))
		goto fail;
	if ((how & OPEN_MSI) && !enable_msi(v))
		goto fail;
	if ((how & OPEN_MASTER) && !set_master(v))
		goto fail;
	note("opened %s: group %d, device fd %d%s%s", bdf, grp, v->device,
	     how & OPEN_MSI ? ", MSI on an eventfd" : "", how & OPEN_MASTER ? ", bus master" : "");
	return true;
fail:
	vdev_close(v);
	return false;
}

/* ---- interrupts and edu operations ---- */

static bool efd_ready(int efd, int ms)
{
	struct pollfd p = { .fd = efd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* The eventfd's counter (reading resets it) once it is non-zero, or 0 after ms. */
static uint64_t efd_take(int efd, int ms)
{
	uint64_t cnt = 0;

	if (!efd_ready(efd, ms) || read(efd, &cnt, sizeof(cnt)) != sizeof(cnt))
		return 0;
	return cnt;
}

static bool expect_irqs(int efd, uint64_t want, const char *what)
{
	uint64_t got = efd_take(efd, IRQ_WAIT_MS);

	return expect(got == want, "%s: expected %llu interrupt(s) on the eventfd, saw %llu", what,
		      (unsigned long long)want, (unsigned long long)got);
}

static bool expect_quiet(int efd, const char *what)
{
	uint64_t got = efd_take(efd, QUIET_MS);

	return expect(!got, "%s: expected no interrupt within %d ms, saw %llu", what, QUIET_MS,
		      (unsigned long long)got);
}

/* One raise through EDU_IRQ_RAISE: exactly one MSI, then the status bit is acked. */
static bool edu_raise_ack(struct vdev *v, const char *what)
{
	uint32_t st;
	bool ok;

	wr32(v, EDU_IRQ_RAISE, EDU_STATUS_RAISE);
	ok = expect_irqs(v->efd, 1, what);
	st = rd32(v, EDU_IRQ_STATUS);
	ok &= need(st & EDU_STATUS_RAISE, "%s: irq status: expected 0x%x set, saw 0x%x", what,
		   EDU_STATUS_RAISE, st);
	wr32(v, EDU_IRQ_ACK, EDU_STATUS_RAISE);
	st = rd32(v, EDU_IRQ_STATUS);
	ok &= need(!(st & EDU_STATUS_RAISE),
		   "%s: irq status after ack: expected 0x%x clear, saw 0x%x", what,
		   EDU_STATUS_RAISE, st);
	return ok;
}

static bool edu_dma_idle(struct vdev *v, const char *what)
{
	uint64_t t0 = now_ms();
	uint32_t cmd;

	for (;;) {
		cmd = rd32(v, EDU_DMA_CMD);
		if (cmd == ~0u || !(cmd & EDU_DMA_RUN))
			break;
		if (now_ms() - t0 > DMA_WAIT_MS)
			break;
		sleep_ms(10);
	}
	return need(!(cmd & EDU_DMA_RUN),
		    "%s: DMA command register: expected bit 0 clear within %d ms, saw 0x%x", what,
		    DMA_WAIT_MS, cmd);
}

/* Programs one DMA with a completion interrupt; addresses are 32-bit writes. */
static void edu_dma_start(struct vdev *v, uint32_t src, uint32_t dst, uint32_t cnt, bool to_ram)
{
	wr32(v, EDU_DMA_SRC, src);
	wr32(v, EDU_DMA_DST, dst);
	wr32(v, EDU_DMA_COUNT, cnt);
	wr32(v, EDU_DMA_CMD, EDU_DMA_RUN | EDU_DMA_IRQ | (to_ram ? EDU_DMA_TO_RAM : 0));
}

/* One DMA, waited for: exactly one completion MSI, then its status bit is acked. */
static bool edu_dma(struct vdev *v, uint32_t src, uint32_t dst, uint32_t cnt, bool to_ram,
		    const char *what)
{
	uint32_t st;
	bool ok;

	edu_dma_start(v, src, dst, cnt, to_ram);
	ok = expect_irqs(v->efd, 1, what);
	ok &= edu_dma_idle(v, what);
	st = rd32(v, EDU_IRQ_STATUS);
	ok &= need(st & EDU_STATUS_DMA, "%s: irq status: expected 0x%x set, saw 0x%x", what,
		   EDU_STATUS_DMA, st);
	wr32(v, EDU_IRQ_ACK, EDU_STATUS_DMA);
	return ok;
}

/* RAM->edu of a fresh pattern at src_off, edu->RAM to dst_off, compared. */
static bool dma_round_trip(struct vdev *v, unsigned int src_off, unsigned int dst_off,
			   uint32_t edu_addr, uint32_t seed)
{
	bool ok;

	fill_pattern(v->mem + src_off, XFER, seed);
	memset(v->mem + dst_off, 0, XFER);
	ok = edu_dma(v, DMA_IOVA + src_off, edu_addr, XFER, false, "RAM->edu DMA completion");
	ok &= edu_dma(v, edu_addr, DMA_IOVA + dst_off, XFER, true, "edu->RAM DMA completion");
	ok &= expect_pattern(v->mem + dst_off, XFER, seed, "edu->RAM DMA data in memory");
	return ok;
}

/* ---- keepalive ---- */

/*
 * ARM with @token_in (zeros: the driver makes the token); on success the token ARM gave
 * is at @token_out, if not NULL.
 */
static int do_arm_token(struct vdev *v, const uint8_t *token_in, uint8_t *token_out,
			uint32_t timeout_ms, struct vfio_keepalive_arm *a)
{
	int ret;
	struct vfio_keepalive_range rg = {
		.iova = DMA_IOVA,
		.size = DMA_SIZE,
		.vaddr = (uintptr_t)v->mem,
	};

	memset(a, 0, sizeof(*a));
	a->argsz = sizeof(*a);
	memcpy(a->token, token_in, VFIO_KEEPALIVE_TOKEN_SIZE);
	a->device_fd = v->device;
	a->group_fd = v->group;
	a->container_fd = v->container;
	a->timeout_ms = timeout_ms;
	a->nr_ranges = 1;
	a->ranges = (uintptr_t)&rg;
	a->owner_fd = -1;
	ret = ioctl(v->device, VFIO_KEEPALIVE_ARM, a);
	if (!ret && token_out)
		memcpy(token_out, a->token, VFIO_KEEPALIVE_TOKEN_SIZE);
	return ret;
}

static const uint8_t zero_token[VFIO_KEEPALIVE_TOKEN_SIZE];

/* ARM, the driver making the token, which lands at @token: it must not be zeros. */
static int do_arm(struct vdev *v, uint8_t *token, uint32_t timeout_ms,
		  struct vfio_keepalive_arm *a)
{
	int ret = do_arm_token(v, zero_token, token, timeout_ms, a);

	if (!ret)
		expect(memcmp(token, zero_token, VFIO_KEEPALIVE_TOKEN_SIZE),
		       "ARM's token: expected 16 bytes from the driver, saw zeros");
	return ret;
}

static bool check_arm_out(const struct vfio_keepalive_arm *a)
{
	bool ok;

	ok = expect(a->owner_fd >= 0, "ARM owner_fd: expected >= 0, saw %d", a->owner_fd);
	ok &= expect(a->irq_index == VFIO_PCI_MSI_IRQ_INDEX,
		     "ARM irq_index: expected %u (MSI), saw %u", VFIO_PCI_MSI_IRQ_INDEX,
		     a->irq_index);
	ok &= expect(a->nr_irqs == 1, "ARM nr_irqs: expected 1, saw %u", a->nr_irqs);
	return ok;
}

static int do_disarm(struct vdev *v)
{
	struct vfio_keepalive_disarm d = { .argsz = sizeof(d) };

	return ioctl(v->device, VFIO_KEEPALIVE_DISARM, &d);
}

/* RECLAIM with room for room interrupts and ranges; errno survives. */
static int do_reclaim(const char *name, const uint8_t *token, uint32_t flags, uint32_t room,
		      struct reclaimed *o)
{
	int kfd, ret, e, i;

	memset(o, 0, sizeof(*o));
	for (i = 0; i < MAX_IRQS; i++)
		o->irq_fds[i] = -1;
	for (i = 0; i < MAX_RANGES; i++)
		o->ranges[i].memfd = -1;
	o->r.argsz = sizeof(o->r);
	o->r.flags = flags;
	memcpy(o->r.token, token, VFIO_KEEPALIVE_TOKEN_SIZE);
	snprintf(o->r.device, sizeof(o->r.device), "%s", name);
	o->r.device_fd = -1;
	o->r.group_fd = -1;
	o->r.container_fd = -1;
	o->r.owner_fd = -1;
	o->r.nr_irqs = room < MAX_IRQS ? room : MAX_IRQS;
	o->r.nr_ranges = room < MAX_RANGES ? room : MAX_RANGES;
	o->r.irq_fds = room ? (uintptr_t)o->irq_fds : 0;
	o->r.irq_counts = room ? (uintptr_t)o->irq_counts : 0;
	o->r.ranges = room ? (uintptr_t)o->ranges : 0;
	kfd = open(MISC_DEV, O_RDWR | O_CLOEXEC);
	if (!need_ok(kfd, "open " MISC_DEV))
		return -1;
	ret = ioctl(kfd, VFIO_KEEPALIVE_RECLAIM, &o->r);
	e = errno;
	close(kfd);
	errno = e;
	return ret;
}

/* Closes what a successful RECLAIM installed. */
static void reclaimed_close(struct reclaimed *o)
{
	uint32_t i;

	close_fd(&o->r.device_fd);
	close_fd(&o->r.owner_fd);
	for (i = 0; i < o->r.nr_irqs && i < MAX_IRQS; i++)
		close_fd(&o->irq_fds[i]);
	for (i = 0; i < o->r.nr_ranges && i < MAX_RANGES; i++)
		close_fd(&o->ranges[i].memfd);
	close_fd(&o->r.group_fd);
	close_fd(&o->r.container_fd);
}

/* A RECLAIM that must fail with want; should it succeed, what it gave is closed again. */
static bool expect_reclaim_fails(const char *name, const uint8_t *token, int want,
				 const char *what)
{
	struct reclaimed o;
	int ret = do_reclaim(name, token, 0, MAX_IRQS, &o);

	if (!ret) {
		expect(false, "%s: expected -1/%s, saw success (device fd %d)", what, ename(want),
		       o.r.device_fd);
		reclaimed_close(&o);
		return false;
	}
	return expect_err(ret, want, what);
}

/* After a failure: a device a test left armed is taken back and closed the stock way. */
static void cleanup_armed(const uint8_t *token)
{
	struct reclaimed o;

	if (do_reclaim(bdf, token, VFIO_KEEPALIVE_RECLAIM_DISARM, MAX_IRQS, &o))
		return;
	note("cleanup: the device was still armed; reclaimed it with RECLAIM_DISARM and closed it");
	reclaimed_close(&o);
}

/* A vdev made of what RECLAIM returned; extra interrupts and ranges are closed. */
static void vdev_from_reclaimed(struct vdev *v, struct reclaimed *o)
{
	uint32_t i;

	vdev_init(v);
	v->device = o->r.device_fd;
	v->group = o->r.group_fd;
	v->container = o->r.container_fd;
	v->owner = o->r.owner_fd;
	if (o->r.nr_irqs >= 1)
		v->efd = o->irq_fds[0];
	if (o->r.nr_ranges >= 1)
		v->memfd = o->ranges[0].memfd;
	for (i = 1; i < o->r.nr_irqs && i < MAX_IRQS; i++)
		close_fd(&o->irq_fds[i]);
	for (i = 1; i < o->r.nr_ranges && i < MAX_RANGES; i++)
		close_fd(&o->ranges[i].memfd);
}

static void expect_fd_link(int fd, const char *want, bool prefix, const char *what)
{
	char path[64], link[PATH_MAX];
	ssize_t n;
	bool ok;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		snprintf(link, sizeof(link), "%s", ename(errno));
	else
		link[n] = 0;
	ok = n >= 0 && (prefix ? !strncmp(link, want, strlen(want)) : !strcmp(link, want));
	expect(ok, "%s (fd %d): expected %s%s, saw %s", what, fd, want, prefix ? "..." : "", link);
}

/* Checks of RECLAIM's outputs that every successful RECLAIM of the edu device passes. */
static bool check_reclaim_out(struct reclaimed *o, bool disarm, uint64_t irq_count_want)
{
	char grp[64];
	bool ok;

	ok = expect(o->r.device_fd >= 0 && o->r.group_fd >= 0 && o->r.container_fd >= 0,
		    "RECLAIM device/group/container fds: expected >= 0, saw %d/%d/%d",
		    o->r.device_fd, o->r.group_fd, o->r.container_fd);
	if (disarm)
		ok &= expect(o->r.owner_fd == -1,
			     "RECLAIM owner_fd with RECLAIM_DISARM: expected -1, saw %d",
			     o->r.owner_fd);
	else
		ok &= expect(o->r.owner_fd >= 0, "RECLAIM owner_fd: expected >= 0, saw %d",
			     o->r.owner_fd);
	ok &= expect(o->r.irq_index == VFIO_PCI_MSI_IRQ_INDEX,
		     "RECLAIM irq_index: expected %u (MSI), saw %u", VFIO_PCI_MSI_IRQ_INDEX,
		     o->r.irq_index);
	ok &= expect(o->r.nr_irqs == 1, "RECLAIM nr_irqs: expected 1, saw %u", o->r.nr_irqs);
	if (o->r.nr_irqs >= 1) {
		ok &= expect(o->irq_fds[0] >= 0, "RECLAIM irq_fds[0]: expected >= 0, saw %d",
			     o->irq_fds[0]);
		ok &= expect(o->irq_counts[0] == irq_count_want,
			     "RECLAIM irq_counts[0] (ownerless signals): expected %llu, saw %llu",
			     (unsigned long long)irq_count_want,
			     (unsigned long long)o->irq_counts[0]);
	}
	ok &= expect(o->r.nr_ranges == 1, "RECLAIM nr_ranges: expected 1, saw %u", o->r.nr_ranges);
	if (o->r.nr_ranges >= 1) {
		struct vfio_keepalive_range *rg = &o->ranges[0];

		ok &= expect(rg->iova == DMA_IOVA && rg->size == DMA_SIZE,
			     "RECLAIM range 0: expected iova 0x%llx size 0x%llx, saw 0x%llx 0x%llx",
			     DMA_IOVA, DMA_SIZE, rg->iova, rg->size);
		ok &= expect(rg->memfd >= 0 && rg->offset == 0,
			     "RECLAIM range 0: expected memfd >= 0 offset 0, saw %d 0x%llx",
			     rg->memfd, rg->offset);
		ok &= expect(rg->vaddr == 0 && !rg->flags,
			     "RECLAIM range 0: expected vaddr 0 flags 0, saw 0x%llx 0x%x",
			     rg->vaddr, rg->flags);
	}
	note("RECLAIM: device had no owner for %llu ms",
	     (unsigned long long)o->r.ownerless_ns / 1000000);
	if (!ok)
		return false;
	/* The files are what they stand for (a dup of the file ARM was given, or the same). */
	snprintf(grp, sizeof(grp), "/dev/vfio/%d", iommu_group());
	expect_fd_link(o->r.device_fd, "anon_inode:[vfio-device]", false, "RECLAIM device_fd");
	expect_fd_link(o->r.group_fd, grp, false, "RECLAIM group_fd");
	expect_fd_link(o->r.container_fd, "/dev/vfio/vfio", false, "RECLAIM container_fd");
	expect_fd_link(o->irq_fds[0], "anon_inode:[eventfd]", false, "RECLAIM irq_fds[0]");
	expect_fd_link(o->ranges[0].memfd, "/memfd:vka-dma", true, "RECLAIM range 0 memfd");
	return true;
}

/* ---- owners that arm and die ---- */

struct owner_opts {
	uint32_t timeout_ms;
	bool arm;		/* false: a plain owner (notoken) */
	bool own_token_check;	/* ARM with a token of its own first: EINVAL */
	int go_fd;		/* >= 0: wait for a byte (or EOF) on it before dying */
};

/*
 * Child A of wrongtoken, timeout, unbind and notoken: opens the device with MSI and
 * bus master, checks one raise, arms (unless told not to), tells the parent through
 * msg_fd and dies by SIGKILL.  On a failure it disarms, closes and exits 1 instead.
 */
static void simple_owner(int msg_fd, const struct owner_opts *oo)
{
	struct owner_msg m = { .magic = MSG_MAGIC };
	struct vfio_keepalive_arm a;
	uint8_t own[VFIO_KEEPALIVE_TOKEN_SIZE];
	char tok[2 * VFIO_KEEPALIVE_TOKEN_SIZE + 1];
	bool armed = false;
	struct vdev v;
	int ret;

	if (!vfio_open(&v, OPEN_MSI | OPEN_MASTER | (oo->arm ? OPEN_NEED_VADDR : 0)))
		_exit(KSFT_FAIL);
	if (!edu_raise_ack(&v, "raise before ARM"))
		goto fail;
	if (!need(msi_line(&m.irq, &m.irq_count) == 1,
		  "vfio-msi[0](%s) in /proc/interrupts: expected a line", bdf))
		goto fail;
	note("host IRQ %d, count %llu", m.irq, (unsigned long long)m.irq_count);
	if (oo->arm) {
		if (oo->own_token_check) {
			/* since API version 2 the token is the driver's */
			if (!random_token(own))
				goto fail;
			ret = do_arm_token(&v, own, NULL, oo->timeout_ms, &a);
			if (!expect_err(ret, EINVAL, "ARM with a token of the caller's own")) {
				if (!ret)
					do_disarm(&v);
				if (!ret && a.owner_fd >= 0)
					close(a.owner_fd);
				goto fail;
			}
		}
		ret = do_arm(&v, m.token, oo->timeout_ms, &a);
		if (!expect_ok(ret, "ARM"))
			goto fail;
		armed = true;
		v.owner = a.owner_fd;
		if (!check_arm_out(&a))
			goto fail;
		note("armed with token %s, timeout %u ms", token_str(m.token, tok), oo->timeout_ms);
	}
	if (!send_all(msg_fd, &m, sizeof(m)))
		goto fail;
	if (oo->go_fd >= 0) {
		char c;

		efd_ready(oo->go_fd, CHILD_WAIT_MS);
		if (read(oo->go_fd, &c, 1) < 0)
			note("read of the go pipe: %s", ename(errno));
	}
	note("dying by SIGKILL with everything open");
	flush_output();
	kill(getpid(), SIGKILL);
	for (;;)
		pause();
fail:
	if (armed)
		do_disarm(&v);
	vdev_close(&v);
	_exit(KSFT_FAIL);
}

/* Runs simple_owner in a child; the parent gets its message and its death. */
static bool run_owner(const struct owner_opts *oo, struct owner_msg *m)
{
	int p[2], st;
	pid_t pid;
	bool got;

	if (!need_ok(pipe(p), "pipe"))
		return false;
	pid = spawn("A");
	if (pid < 0)
		return false;
	if (!pid) {
		close(p[0]);
		simple_owner(p[1], oo);
	}
	close(p[1]);
	got = recv_msg(p[0], m);
	close(p[0]);
	st = wait_child(pid, CHILD_WAIT_MS);
	expect_killed(st, "owner A");
	return expect(got, "owner A's message: expected one before it died, saw %s",
		      got ? "it" : "none");
}

/* ---- info ---- */

static int info_ioctl(int kfd, uint32_t argsz, uint32_t flags, struct vfio_keepalive_info *info)
{
	memset(info, 0, sizeof(*info));
	info->argsz = argsz;
	info->flags = flags;
	return ioctl(kfd, VFIO_KEEPALIVE_GET_INFO, info);
}

static int test_info(void)
{
	static const uint32_t bad_argsz[] = { 0, 4, 7 };
	static const uint32_t bad_flags[] = { 1, 0x80000000u };
	struct vfio_keepalive_info info;
	char what[96];
	int kfd, ret;
	size_t i;

	kfd = open(MISC_DEV, O_RDWR | O_CLOEXEC);
	if (kfd < 0 && errno == ENOENT)
		return skip("no " MISC_DEV " (vfio_keepalive is not loaded)");
	if (!need_ok(kfd, "open " MISC_DEV))
		return KSFT_FAIL;
	ret = info_ioctl(kfd, sizeof(info), 0, &info);
	snprintf(what, sizeof(what), "GET_INFO with argsz %zu, flags 0", sizeof(info));
	if (expect_ok(ret, what)) {
		note("api_version %u, default_timeout_ms %u, max_timeout_ms %u", info.api_version,
		     info.default_timeout_ms, info.max_timeout_ms);
		note("max_ranges %u, max_irqs %u", info.max_ranges, info.max_irqs);
		expect(info.api_version == VFIO_KEEPALIVE_API_VERSION,
		       "api_version: expected %u, saw %u", VFIO_KEEPALIVE_API_VERSION,
		       info.api_version);
		expect(info.default_timeout_ms >= 1 &&
		       info.default_timeout_ms <= info.max_timeout_ms,
		       "default_timeout_ms: expected 1..max_timeout_ms (%u), saw %u",
		       info.max_timeout_ms, info.default_timeout_ms);
		expect(opt_timeout_ms <= info.max_timeout_ms,
		       "the ARM timeout the tests use (-t): expected <= max_timeout_ms %u, saw %u",
		       info.max_timeout_ms, opt_timeout_ms);
		expect(info.max_ranges >= 1, "max_ranges: expected >= 1, saw %u", info.max_ranges);
		expect(info.max_irqs >= 1, "max_irqs: expected >= 1, saw %u", info.max_irqs);
	}
	for (i = 0; i < ARRAY_SIZE(bad_argsz); i++) {
		snprintf(what, sizeof(what), "GET_INFO with argsz %u (< 8)", bad_argsz[i]);
		expect_err(info_ioctl(kfd, bad_argsz[i], 0, &info), EINVAL, what);
	}
	for (i = 0; i < ARRAY_SIZE(bad_flags); i++) {
		snprintf(what, sizeof(what), "GET_INFO with unknown flags 0x%x", bad_flags[i]);
		expect_err(info_ioctl(kfd, sizeof(info), bad_flags[i], &info), EINVAL, what);
	}
	close(kfd);
	return failures ? KSFT_FAIL : KSFT_PASS;
}

/* ---- common preconditions ---- */

static int prepare(bool need_misc, const char *drv)
{
	char path[PATH_MAX];
	int ret;

	ret = find_device();
	if (ret)
		return ret;
	note("device %s", bdf);
	if (access("/dev/vfio/vfio", F_OK))
		return skip("no /dev/vfio/vfio (vfio is not loaded)");
	if (need_misc && access(MISC_DEV, F_OK))
		return skip("no " MISC_DEV " (vfio_keepalive is not loaded)");
	if (iommu_group() < 0) {
		dev_path(path, sizeof(path), bdf, "iommu_group");
		return skip("no IOMMU group for %s (no %s: IOMMU off?)", bdf, path);
	}
	return bind_driver(drv);
}

/* ---- handover ---- */

/*
 * Expected interrupts in handover.  After ARM, A starts an edu->RAM DMA with a
 * completion interrupt and writes EDU_IRQ_RAISE once: two MSIs, each signalling the
 * eventfd once, and nobody reads it in between, so B reads a counter of 2.  A waits
 * until the raise's MSI has reached the eventfd before it dies, and the DMA ends about
 * 100 ms after its command, well after A has died: of the two, only the DMA completion
 * comes while the device has no owner, so irq_counts[0] is 1.  (A tells the parent
 * whether the DMA was still running just before it died; if not, the expected
 * irq_counts[0] would be 0, and the test fails on that first.)
 */
#define HANDOVER_PENDING	2
#define HANDOVER_OWNERLESS	1
/* Interrupts of the device after A read /proc/interrupts: A's 2, then B's 3. */
#define HANDOVER_IRQS_SINCE_A	5

static void handover_owner(int msg_fd, bool by_exit)
{
	struct owner_msg m = { .magic = MSG_MAGIC };
	char tok[2 * VFIO_KEEPALIVE_TOKEN_SIZE + 1];
	struct vfio_keepalive_arm a;
	bool armed = false;
	struct vdev v;
	uint32_t cmd;

	if (!vfio_open(&v, OPEN_MSI | OPEN_MASTER | OPEN_NEED_VADDR))
		_exit(KSFT_FAIL);
	m.seed = new_seed();
	fill_pattern(v.mem + OFF_A_SRC, XFER, m.seed);
	memset(v.mem + OFF_A_DST, 0, XFER);
	note("RAM->edu DMA of %d bytes of pattern 0x%08x from IOVA 0x%llx", XFER, m.seed,
	     DMA_IOVA + OFF_A_SRC);
	if (!edu_dma(&v, DMA_IOVA + OFF_A_SRC, EDU_BUF, XFER, false, "RAM->edu DMA completion"))
		goto fail;
	if (!need(msi_line(&m.irq, &m.irq_count) == 1,
		  "vfio-msi[0](%s) in /proc/interrupts: expected a line", bdf))
		goto fail;
	note("host IRQ %d, count %llu", m.irq, (unsigned long long)m.irq_count);
	if (!expect_ok(do_arm(&v, m.token, opt_timeout_ms, &a), "ARM"))
		goto fail;
	armed = true;
	v.owner = a.owner_fd;
	if (!check_arm_out(&a))
		goto fail;
	note("armed with token %s, timeout %u ms, owner_fd %d", token_str(m.token, tok),
	     opt_timeout_ms, a.owner_fd);

	/* The DMA that lands while nobody owns the device, and one raise before dying. */
	edu_dma_start(&v, EDU_BUF, DMA_IOVA + OFF_A_DST, XFER, true);
	wr32(&v, EDU_IRQ_RAISE, EDU_STATUS_RAISE);
	if (!expect(efd_ready(v.efd, IRQ_WAIT_MS),
		    "the raise's MSI on the eventfd (not read): expected within %d ms",
		    IRQ_WAIT_MS))
		goto fail;
	cmd = rd32(&v, EDU_DMA_CMD);
	m.dma_running = cmd & EDU_DMA_RUN;
	if (failures)
		goto fail;
	if (!send_all(msg_fd, &m, sizeof(m)))
		goto fail;
	note("edu->RAM DMA to IOVA 0x%llx started (command 0x%x), 1 raise pending; dying by %s",
	     DMA_IOVA + OFF_A_DST, cmd, by_exit ? "_exit(0)" : "SIGKILL");
	flush_output();
	if (by_exit)
		_exit(0);
	kill(getpid(), SIGKILL);
	for (;;)
		pause();
fail:
	if (armed)
		do_disarm(&v);
	vdev_close(&v);
	_exit(KSFT_FAIL);
}

static void handover_reclaimer(const struct owner_msg *m)
{
	uint8_t wrong[VFIO_KEEPALIVE_TOKEN_SIZE], cfg[256];
	struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof(unmap) };
	struct vfio_iommu_type1_dma_map map = { .argsz = sizeof(map) };
	uint64_t cnt = 0, pending;
	struct reclaimed o;
	struct vdev v;
	int irq = -1, r, cmd;
	uint32_t st;

	memcpy(wrong, m->token, sizeof(wrong));
	wrong[0] ^= 0xff;
	expect_reclaim_fails(bdf, wrong, EACCES, "RECLAIM with a wrong token");
	if (!expect_ok(do_reclaim(bdf, m->token, 0, MAX_IRQS, &o), "RECLAIM with the right token"))
		_exit(KSFT_FAIL);
	vdev_from_reclaimed(&v, &o);
	if (!check_reclaim_out(&o, false, m->dma_running ? HANDOVER_OWNERLESS : 0) ||
	    !vdev_regions(&v))
		goto disarm;

	/* The device as A left it. */
	st = rd32(&v, EDU_ID);
	expect(st == EDU_ID_VALUE, "edu id register: expected 0x%08x, saw 0x%08x", EDU_ID_VALUE,
	       st);
	st = rd32(&v, EDU_IRQ_STATUS);
	expect(st == (EDU_STATUS_DMA | EDU_STATUS_RAISE),
	       "edu irq status (A's DMA completion and raise, unacked): expected 0x%x, saw 0x%x",
	       EDU_STATUS_DMA | EDU_STATUS_RAISE, st);
	pending = efd_take(v.efd, 1000);
	/* The raise that came while A owned the device, and the DMA completion after. */
	expect(pending == HANDOVER_PENDING, "eventfd counter: expected %d, saw %llu",
	       HANDOVER_PENDING, (unsigned long long)pending);
	cmd = cfg_rd16(&v, PCI_COMMAND);
	expect(cmd >= 0 && (cmd & PCI_COMMAND_MASTER),
	       "PCI_COMMAND through VFIO: expected MASTER (0x4) set, saw 0x%04x", cmd);
	/*
	 * vfio-pci virtualizes MSI Message Control and does not set its enable bit when
	 * MSI is enabled through SET_IRQS: the bit that counts is the hardware's (sysfs).
	 */
	if (sysfs_config(cfg, sizeof(cfg))) {
		r = msi_enable_bit(cfg);
		expect(r == 1, "MSI capability enable bit (sysfs config): expected 1, saw %d", r);
		cmd = cfg[PCI_COMMAND] | cfg[PCI_COMMAND + 1] << 8;
		expect(cmd & PCI_COMMAND_MASTER,
		       "PCI_COMMAND in sysfs config: expected MASTER (0x4) set, saw 0x%04x", cmd);
	}
	if (pread(v.device, cfg, sizeof(cfg), v.cfg) == sizeof(cfg))
		note("MSI enable bit as VFIO shows it (virtualized): %d", msi_enable_bit(cfg));
	r = msi_line(&irq, &cnt);
	expect(r == 1 && irq == m->irq,
	       "host IRQ of vfio-msi[0](%s): expected %d (A's), saw %d%s", bdf, m->irq, irq,
	       r == 1 ? "" : " (no line)");

	/* The DMA's data, through B's own mapping of the memfd. */
	v.mem = mmap(NULL, DMA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, v.memfd,
		     o.ranges[0].offset);
	if (v.mem == MAP_FAILED) {
		v.mem = NULL;
		need_ok(-1, "mmap the reclaimed memfd");
		goto disarm;
	}
	expect_pattern(v.mem + OFF_A_SRC, XFER, m->seed, "A's pattern at memfd +0x0");
	expect_pattern(v.mem + OFF_A_DST, XFER, m->seed,
		       "edu->RAM DMA data at memfd +0x1000, written while nobody owned the device");

	/* B takes the mapping over: new vaddr, same IOVA, no unmapped window. */
	unmap.flags = VFIO_DMA_UNMAP_FLAG_VADDR;
	unmap.iova = DMA_IOVA;
	unmap.size = DMA_SIZE;
	if (!expect_ok(ioctl(v.container, VFIO_IOMMU_UNMAP_DMA, &unmap),
		       "IOMMU_UNMAP_DMA(VADDR) of the reclaimed range"))
		goto disarm;
	expect(unmap.size == DMA_SIZE, "IOMMU_UNMAP_DMA(VADDR) size: expected 0x%llx, saw 0x%llx",
	       DMA_SIZE, unmap.size);
	map.flags = VFIO_DMA_MAP_FLAG_VADDR;
	map.vaddr = (uintptr_t)v.mem;
	map.iova = DMA_IOVA;
	map.size = DMA_SIZE;
	if (!expect_ok(ioctl(v.container, VFIO_IOMMU_MAP_DMA, &map),
		       "IOMMU_MAP_DMA(VADDR) with B's mapping"))
		goto disarm;

	/* B uses the device: each interrupt exactly once. */
	wr32(&v, EDU_IRQ_ACK, EDU_STATUS_DMA | EDU_STATUS_RAISE);
	st = rd32(&v, EDU_IRQ_STATUS);
	expect(!st, "edu irq status after ack: expected 0, saw 0x%x", st);
	dma_round_trip(&v, OFF_B_SRC, OFF_B_DST, EDU_BUF_B, new_seed());
	edu_raise_ack(&v, "raise by B");
	expect_quiet(v.efd, "after B's interrupts");
	r = msi_line(&irq, &cnt);
	expect(r == 1 && irq == m->irq && cnt >= m->irq_count + HANDOVER_IRQS_SINCE_A,
	       "IRQ %d in /proc/interrupts: expected count >= %llu (A's %llu + %d), saw %d %llu",
	       m->irq, (unsigned long long)m->irq_count + HANDOVER_IRQS_SINCE_A,
	       (unsigned long long)m->irq_count, HANDOVER_IRQS_SINCE_A, irq,
	       (unsigned long long)cnt);
disarm:
	if (v.device >= 0)
		expect_ok(do_disarm(&v), "DISARM");
	note("closing the device");
	vdev_close(&v);
	_exit(failures ? KSFT_FAIL : KSFT_PASS);
}

static int test_handover(const char *mode)
{
	struct owner_msg m;
	int ret, p[2], st;
	bool by_exit, got;
	uint64_t t0;
	pid_t pid;

	if (mode && strcmp(mode, "kill") && strcmp(mode, "exit")) {
		note("handover: unknown mode %s (kill or exit)", mode);
		return KSFT_FAIL;
	}
	by_exit = mode && !strcmp(mode, "exit");
	ret = prepare(true, KA_DRIVER);
	if (ret)
		return ret;
	if (!need_ok(pipe(p), "pipe"))
		return KSFT_FAIL;
	pid = spawn("A");
	if (pid < 0)
		return KSFT_FAIL;
	if (!pid) {
		close(p[0]);
		handover_owner(p[1], by_exit);
	}
	close(p[1]);
	got = recv_msg(p[0], &m);
	t0 = now_ms();
	close(p[0]);
	st = wait_child(pid, CHILD_WAIT_MS);
	if (by_exit)
		expect_exit0(st, "owner A (_exit(0))");
	else
		expect_killed(st, "owner A");
	if (!expect(got, "owner A's message: expected one before it died"))
		return KSFT_FAIL;
	/* irq_counts[0] == 1 assumes A is gone before its last DMA ends (100 ms). */
	note("A was reaped %llu ms after it reported its last DMA running",
	     (unsigned long long)(now_ms() - t0));
	expect(m.dma_running, "A's edu->RAM DMA just before A died: expected running, saw %s",
	       m.dma_running ? "running" : "it done (edu takes 100 ms: too slow a host?)");
	expect_kept(m.irq, "device without owner");
	note("nobody owns %s for %d ms", bdf, HANDOVER_GAP_MS);
	sleep_ms(HANDOVER_GAP_MS);
	pid = spawn("B");
	if (pid < 0)
		return KSFT_FAIL;
	if (!pid)
		handover_reclaimer(&m);
	st = wait_child(pid, CHILD_WAIT_MS);
	expect_exit0(st, "reclaimer B");
	expect_released("after B disarmed and closed the device");
	if (failures)
		cleanup_armed(m.token);
	return failures ? KSFT_FAIL : KSFT_PASS;
}

/* ---- wrongtoken ---- */

/*
 * The right token is not enough: a process with neither CAP_SYS_ADMIN nor access to
 * the device's /dev/vfio/<group> (root's, 0600 here) gets EPERM.  Nor may it learn
 * whether a device is kept: of one that is not, it gets EPERM too (@what says which).
 */
static void unprivileged_reclaim(const uint8_t *token, const char *what)
{
	pid_t pid = fork();
	int st;

	if (pid < 0) {
		expect(false, "fork for the unprivileged RECLAIM: %s", strerror(errno));
		return;
	}
	if (!pid) {
		failures = 0;
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534)) {
			expect(false, "dropping to uid/gid 65534: %s", strerror(errno));
			_exit(KSFT_FAIL);
		}
		expect_reclaim_fails(bdf, token, EPERM, what);
		_exit(failures ? KSFT_FAIL : KSFT_PASS);
	}
	st = wait_child(pid, CHILD_WAIT_MS);
	expect_exit0(st, "the unprivileged reclaimer");
}

static void wrongtoken_reclaimer(const struct owner_msg *m)
{
	uint8_t wrong[VFIO_KEEPALIVE_TOKEN_SIZE], next[VFIO_KEEPALIVE_TOKEN_SIZE];
	char tok[2 * VFIO_KEEPALIVE_TOKEN_SIZE + 1];
	struct reclaimed o;
	struct vdev v;
	int ret;

	memcpy(wrong, m->token, sizeof(wrong));
	wrong[VFIO_KEEPALIVE_TOKEN_SIZE - 1] ^= 0x01;
	expect_reclaim_fails(bdf, wrong, EACCES, "RECLAIM with a wrong token (last bit flipped)");
	expect_reclaim_fails("0000:ff:1f.7", m->token, ENOENT,
			     "RECLAIM naming a device that is not armed (0000:ff:1f.7)");
	unprivileged_reclaim(m->token,
			     "RECLAIM with the right token by uid 65534, without CAP_SYS_ADMIN");
	ret = do_reclaim(bdf, m->token, 0, 0, &o);
	if (!ret) {
		expect(false, "RECLAIM with no room: expected -1/ENOSPC, saw success");
		reclaimed_close(&o);
	} else if (expect_err(ret, ENOSPC, "RECLAIM with room for 0 interrupts and 0 ranges")) {
		expect(o.r.nr_irqs == 1 && o.r.nr_ranges == 1,
		       "RECLAIM with no room: expected nr_irqs 1, nr_ranges 1 needed, saw %u, %u",
		       o.r.nr_irqs, o.r.nr_ranges);
	}
	/* Each token reclaims once: RECLAIM gives the next, and the spent one is refused. */
	ret = do_reclaim(bdf, m->token, 0, MAX_IRQS, &o);
	if (!expect_ok(ret, "RECLAIM with the right token"))
		_exit(KSFT_FAIL);
	memcpy(next, o.r.token, sizeof(next));
	expect(memcmp(next, m->token, sizeof(next)) && memcmp(next, zero_token, sizeof(next)),
	       "RECLAIM's next token: expected a new one, saw %s",
	       token_str(next, tok));
	expect_reclaim_fails(bdf, m->token, EACCES, "RECLAIM with the spent token, owned");
	reclaimed_close(&o);		/* its owner file too: no owner again */
	expect_reclaim_fails(bdf, m->token, EACCES, "RECLAIM with the spent token, ownerless");
	ret = do_reclaim(bdf, next, VFIO_KEEPALIVE_RECLAIM_DISARM, MAX_IRQS, &o);
	if (!expect_ok(ret, "RECLAIM with the next token and RECLAIM_DISARM"))
		_exit(KSFT_FAIL);
	expect(!memcmp(o.r.token, zero_token, sizeof(next)),
	       "RECLAIM_DISARM's token out: expected zeros, saw %s", token_str(o.r.token, tok));
	vdev_from_reclaimed(&v, &o);
	/* A acked and drained its one raise before ARM: nothing came while ownerless. */
	if (check_reclaim_out(&o, true, 0) && vdev_regions(&v)) {
		edu_raise_ack(&v, "raise after RECLAIM_DISARM");
		expect_quiet(v.efd, "after the raise");
	}
	note("closing the device");
	vdev_close(&v);
	unprivileged_reclaim(next,
			     "RECLAIM of a device not kept by uid 65534, without CAP_SYS_ADMIN");
	expect_reclaim_fails(bdf, next, ENOENT, "RECLAIM of a device not kept, by root");
	_exit(failures ? KSFT_FAIL : KSFT_PASS);
}

static int test_wrongtoken(void)
{
	struct owner_opts oo = { .timeout_ms = opt_timeout_ms, .arm = true,
				 .own_token_check = true };
	int ret, p[2], go[2], st;
	struct owner_msg m;
	pid_t pid;
	bool got;

	ret = prepare(true, KA_DRIVER);
	if (ret)
		return ret;
	if (!need_ok(pipe(p), "pipe") || !need_ok(pipe(go), "pipe"))
		return KSFT_FAIL;
	pid = spawn("A");
	if (pid < 0)
		return KSFT_FAIL;
	if (!pid) {
		close(p[0]);
		close(go[1]);
		oo.go_fd = go[0];
		simple_owner(p[1], &oo);
	}
	close(p[1]);
	close(go[0]);
	got = recv_msg(p[0], &m);
	close(p[0]);
	if (got)
		expect_reclaim_fails(bdf, m.token, EBUSY, "RECLAIM while A still owns the device");
	if (write(go[1], "g", 1) != 1)
		note("write to the go pipe: %s", ename(errno));
	close(go[1]);
	st = wait_child(pid, CHILD_WAIT_MS);
	expect_killed(st, "owner A");
	if (!expect(got, "owner A's message: expected one"))
		return KSFT_FAIL;
	expect_kept(m.irq, "device without owner");
	pid = spawn("B");
	if (pid < 0)
		return KSFT_FAIL;
	if (!pid)
		wrongtoken_reclaimer(&m);
	st = wait_child(pid, CHILD_WAIT_MS);
	expect_exit0(st, "reclaimer B");
	expect_released("after B's RECLAIM_DISARM and close");
	expect_reclaim_fails(bdf, m.token, ENOENT, "RECLAIM after RECLAIM_DISARM and close");
	if (failures)
		cleanup_armed(m.token);
	return failures ? KSFT_FAIL : KSFT_PASS;
}

/* ---- notoken ---- */

static int test_notoken(void)
{
	struct owner_opts oo = { .go_fd = -1 };
	uint8_t token[VFIO_KEEPALIVE_TOKEN_SIZE];
	struct owner_msg m;
	int ret;

	ret = prepare(true, KA_DRIVER);
	if (ret)
		return ret;
	if (!run_owner(&oo, &m))
		return KSFT_FAIL;
	expect_released("after the owner that never armed died");
	if (random_token(token))
		expect_reclaim_fails(bdf, token, ENOENT, "RECLAIM of a device never armed");
	return failures ? KSFT_FAIL : KSFT_PASS;
}

/* ---- timeout ---- */

/* Child C: a fresh plain owner, one raise, closed. */
static void fresh_user(void)
{
	struct vdev v;

	if (vfio_open(&v, OPEN_MSI | OPEN_MASTER)) {
		edu_raise_ack(&v, "raise by a fresh owner");
		vdev_close(&v);
	}
	_exit(failures ? KSFT_FAIL : KSFT_PASS);
}

static int test_timeout(void)
{
	struct owner_opts oo = { .arm = true, .go_fd = -1 };
	struct owner_msg m;
	int ret, st;
	pid_t pid;

	oo.timeout_ms = opt_timeout_set ? opt_timeout_ms : TIMEOUT_DEF_MS;
	ret = prepare(true, KA_DRIVER);
	if (ret)
		return ret;
	if (!run_owner(&oo, &m))
		return KSFT_FAIL;
	expect_kept(m.irq, "device without owner");
	note("waiting %u ms: the timeout and 2 s", oo.timeout_ms + 2000);
	sleep_ms(oo.timeout_ms + 2000);
	expect_reclaim_fails(bdf, m.token, ENOENT, "RECLAIM after the timeout");
	expect_released("after the timeout");
	pid = spawn("C");
	if (pid < 0)
		return KSFT_FAIL;
	if (!pid)
		fresh_user();
	st = wait_child(pid, CHILD_WAIT_MS);
	expect_exit0(st, "fresh owner C");
	expect_released("after the fresh owner closed the device");
	if (failures)
		cleanup_armed(m.token);
	return failures ? KSFT_FAIL : KSFT_PASS;
}

/* ---- intx ---- */

static void intx_user(void)
{
	struct vfio_keepalive_arm a;
	uint8_t token[VFIO_KEEPALIVE_TOKEN_SIZE];
	int intx_efd = -1, ret;
	struct vdev v;

	if (!vfio_open(&v, OPEN_MASTER | OPEN_NEED_VADDR))
		_exit(KSFT_FAIL);
	intx_efd = eventfd(0, EFD_CLOEXEC);
	if (!need_ok(intx_efd, "eventfd"))
		goto out;
	if (!expect_ok(set_irqs(&v, VFIO_PCI_INTX_IRQ_INDEX,
				VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, intx_efd),
		       "SET_IRQS(INTx, eventfd)"))
		goto out;
	ret = do_arm(&v, token, opt_timeout_ms, &a);
	if (!expect_err(ret, EOPNOTSUPP, "ARM with INTx enabled")) {
		if (!ret) {
			do_disarm(&v);
			close(a.owner_fd);
		}
		goto out;
	}
	if (!expect_ok(set_irqs(&v, VFIO_PCI_INTX_IRQ_INDEX,
				VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, -1),
		       "SET_IRQS(INTx, DATA_NONE, count 0): INTx off") ||
	    !expect(enable_msi(&v), "MSI on after INTx: expected success, saw a failure"))
		goto out;
	if (!expect_ok(do_arm(&v, token, opt_timeout_ms, &a), "ARM with MSI enabled"))
		goto out;
	v.owner = a.owner_fd;
	check_arm_out(&a);
	/* Stock vfio-pci would say EINVAL (MSI is on); armed, the driver refuses first. */
	ret = set_irqs(&v, VFIO_PCI_INTX_IRQ_INDEX,
		       VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, intx_efd);
	expect_err(ret, EBUSY, "SET_IRQS(INTx, eventfd) while armed");
	edu_raise_ack(&v, "MSI raise while armed");
	expect_ok(do_disarm(&v), "DISARM");
out:
	close_fd(&intx_efd);
	vdev_close(&v);
	_exit(failures ? KSFT_FAIL : KSFT_PASS);
}

static int test_intx(void)
{
	uint8_t token[VFIO_KEEPALIVE_TOKEN_SIZE];
	int ret, st;
	pid_t pid;

	ret = prepare(true, KA_DRIVER);
	if (ret)
		return ret;
	pid = spawn("A");
	if (pid < 0)
		return KSFT_FAIL;
	if (!pid)
		intx_user();
	st = wait_child(pid, CHILD_WAIT_MS);
	expect_exit0(st, "owner A");
	expect_released("after A disarmed and closed the device");
	if (random_token(token))
		expect_reclaim_fails(bdf, token, ENOENT, "RECLAIM after DISARM and close");
	return failures ? KSFT_FAIL : KSFT_PASS;
}

/* ---- unbind ---- */

static int test_unbind(void)
{
	struct owner_opts oo = { .timeout_ms = opt_timeout_ms, .arm = true, .go_fd = -1 };
	char path[PATH_MAX], drv[64];
	struct owner_msg m;
	uint64_t t0;
	int ret, st;
	pid_t pid;

	ret = prepare(true, KA_DRIVER);
	if (ret)
		return ret;
	if (!run_owner(&oo, &m))
		return KSFT_FAIL;
	expect_kept(m.irq, "device without owner");
	dev_path(path, sizeof(path), bdf, "driver/unbind");
	note("writing %s to %s", bdf, path);
	t0 = now_ms();
	pid = spawn("U");
	if (pid < 0)
		return KSFT_FAIL;
	if (!pid) {
		ret = write_file(path, bdf);
		need(!ret, "write %s to %s: expected success, saw %s", bdf, path, ename(-ret));
		_exit(ret ? KSFT_FAIL : KSFT_PASS);
	}
	st = wait_child(pid, UNBIND_WAIT_MS);
	expect(st >= 0, "unbind: expected to return within %d ms, saw %s", UNBIND_WAIT_MS,
	       st >= 0 ? "it returned" : "it still blocked");
	expect_exit0(st, "unbind writer");
	note("unbind took %llu ms (ARM timeout %u ms)", (unsigned long long)(now_ms() - t0),
	     oo.timeout_ms);
	dev_link("driver", drv, sizeof(drv));
	expect(!drv[0], "driver of %s after unbind: expected none, saw %s", bdf, drv);
	expect_released("after unbind");
	expect_reclaim_fails(bdf, m.token, ENOENT, "RECLAIM after unbind");
	if (st >= 0) {
		note("binding %s to %s again", bdf, KA_DRIVER);
		ret = bind_driver(KA_DRIVER);
		expect(ret == KSFT_PASS, "rebinding to %s: expected success, saw %s", KA_DRIVER,
		       ret == KSFT_SKIP ? "driver gone" : "a failure");
	}
	if (failures)
		cleanup_armed(m.token);
	return failures ? KSFT_FAIL : KSFT_PASS;
}

/* ---- stock ---- */

static void stock_user(int res_fd)
{
	struct stock_result res = { 0 };
	struct vdev v;

	if (vfio_open(&v, OPEN_MSI | OPEN_MASTER)) {
		int before = failures;

		dma_round_trip(&v, OFF_S_SRC, OFF_S_DST, EDU_BUF, new_seed());
		res.dma_ok = failures == before;
		wr32(&v, EDU_IRQ_RAISE, EDU_STATUS_RAISE);
		res.raise_irqs = efd_take(v.efd, IRQ_WAIT_MS);
		expect(res.raise_irqs == 1, "raise: expected 1 interrupt on the eventfd, saw %u",
		       res.raise_irqs);
		wr32(&v, EDU_IRQ_ACK, EDU_STATUS_RAISE);
		expect_quiet(v.efd, "after the raise");
		note("closing the device");
		vdev_close(&v);
	}
	send_all(res_fd, &res, sizeof(res));
	_exit(failures ? KSFT_FAIL : KSFT_PASS);
}

static int test_stock(const char *drv)
{
	struct stock_result res = { 0 };
	int ret, p[2], st, line, master;
	pid_t pid;

	if (!drv || (strcmp(drv, "vfio-pci") && strcmp(drv, KA_DRIVER))) {
		note("stock: DRIVER must be vfio-pci or %s", KA_DRIVER);
		return KSFT_FAIL;
	}
	ret = prepare(false, drv);
	if (ret)
		return ret;
	if (!need_ok(pipe(p), "pipe"))
		return KSFT_FAIL;
	pid = spawn("S");
	if (pid < 0)
		return KSFT_FAIL;
	if (!pid) {
		close(p[0]);
		stock_user(p[1]);
	}
	close(p[1]);
	if (!recv_all(p[0], &res, sizeof(res), CHILD_WAIT_MS))
		memset(&res, 0, sizeof(res));
	close(p[0]);
	st = wait_child(pid, CHILD_WAIT_MS);
	expect_exit0(st, "stock user");
	released_state(&line, &master);
	note("stock summary: dma=%s irq=%u master_after_close=%d msi_line_after_close=%d",
	     res.dma_ok ? "ok" : "bad", res.raise_irqs, master, line);
	expect(res.dma_ok && res.raise_irqs == 1 && !master && !line,
	       "stock: expected dma=ok irq=1 master_after_close=0 msi_line_after_close=0, saw %s",
	       "the summary above");
	return failures ? KSFT_FAIL : KSFT_PASS;
}

/* ---- main ---- */

static int help(const char *prog, int ret)
{
	fprintf(stderr, "usage: %s [-d BDF] [-t TIMEOUT_MS] SUBCOMMAND [ARG]\n", prog);
	fprintf(stderr, "  -d BDF         the edu device (default: the first 1234:11e8)\n");
	fprintf(stderr, "  -t TIMEOUT_MS  ARM's reclaim timeout (default 3000; timeout: 1500)\n");
	fprintf(stderr, "subcommands:\n");
	fprintf(stderr, "  info                  GET_INFO, argsz and flags checks\n");
	fprintf(stderr, "  handover [kill|exit]  arm, owner dies, another process reclaims\n");
	fprintf(stderr, "  wrongtoken            RECLAIM/ARM error paths, RECLAIM_DISARM\n");
	fprintf(stderr, "  notoken               an owner that never armed dies\n");
	fprintf(stderr, "  timeout               nobody reclaims before the timeout\n");
	fprintf(stderr, "  intx                  ARM refused with INTx; INTx refused armed\n");
	fprintf(stderr, "  unbind                unbind the driver while nobody owns the device\n");
	fprintf(stderr, "  stock DRIVER          plain VFIO cycle on vfio-pci or vfio-keepalive\n");
	fprintf(stderr, "exit status: 0 pass, 1 fail, 4 skip\n");
	return ret;
}

int main(int argc, char **argv)
{
	const char *sub, *arg;
	char name[96];
	int opt, ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	while ((opt = getopt(argc, argv, "d:t:h")) != -1) {
		switch (opt) {
		case 'd':
			opt_bdf = optarg;
			break;
		case 't':
			opt_timeout_ms = strtoul(optarg, NULL, 0);
			opt_timeout_set = true;
			break;
		default:
			return help(argv[0], opt == 'h' ? KSFT_PASS : KSFT_FAIL);
		}
	}
	if (optind >= argc)
		return help(argv[0], KSFT_FAIL);
	sub = argv[optind];
	arg = optind + 1 < argc ? argv[optind + 1] : NULL;
	snprintf(name, sizeof(name), "%s%s%s", sub, arg ? " " : "", arg ? arg : "");

	if (geteuid())
		ret = skip("not root");
	else if (!strcmp(sub, "info"))
		ret = test_info();
	else if (!strcmp(sub, "handover"))
		ret = test_handover(arg);
	else if (!strcmp(sub, "wrongtoken"))
		ret = test_wrongtoken();
	else if (!strcmp(sub, "notoken"))
		ret = test_notoken();
	else if (!strcmp(sub, "timeout"))
		ret = test_timeout();
	else if (!strcmp(sub, "intx"))
		ret = test_intx();
	else if (!strcmp(sub, "unbind"))
		ret = test_unbind();
	else if (!strcmp(sub, "stock"))
		ret = test_stock(arg);
	else
		ret = help(argv[0], KSFT_FAIL);
	if (ret == KSFT_PASS && failures)
		ret = KSFT_FAIL;
	if (ret == KSFT_SKIP)
		printf("ok 1 %s # SKIP %s\n", name, skip_reason);
	else
		printf("%sok 1 %s\n", ret == KSFT_PASS ? "" : "not ", name);
	return ret;
}
