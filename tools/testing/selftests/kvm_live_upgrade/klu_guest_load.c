// SPDX-License-Identifier: GPL-2.0
/*
 * klu_guest_load [-m MIB] [-d DISK] [-s STATUS -x STOP]: the workload of a real Linux
 * guest whose VM the host moves between cores (beds/guest/suites/realvm).  It runs
 * inside that guest, as part of its init, on every CPU of the guest (a thread each, so
 * every vCPU runs guest code when its VM moves), and checks what a lost or wrong piece
 * of VM state would break:
 *
 *   memory  MIB MiB a thread (default 16), every 64-bit word checked and rewritten each
 *           round, with a pattern of the thread, the round and the word's address;
 *   clocks  CLOCK_MONOTONIC and CLOCK_REALTIME, read around every page of that work:
 *           neither may go back, their difference may not drift by more than 100 ms
 *           (a kvmclock that jumped), and the longest gap between two reads (the
 *           guest's longest pause) is reported;
 *   disk    DISK (default /dev/vda), by the first thread: 64 KiB blocks written with
 *           O_DIRECT, one a round, and the one written the round before read back and
 *           checked.
 *
 * It prints "klu-guest round N pause_max_us U" after a round of the first thread,
 * twice a second at most.  A line on stdin (the serial console) ends the run: each
 * thread finishes its round and checks its memory once more, then it prints
 * "klu-guest done rounds=N errors=E pause_max_us=U" and powers the guest off.  Each
 * error prints a "klu-guest ERROR" line first.
 *
 * A device that works beside it (the realpt suite's edu, klu_edu_guest) reports through
 * the file STATUS, whose first line is appended to every round line and to the done
 * line; before the done line, "1" is written to the file STOP, so that the device's
 * work ends and the figures that line reports are final.  With STOP, the guest powers
 * off only at a second line on stdin, so that the host can read its own count of the
 * device's interrupts while the device is still open.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <time.h>
#include <unistd.h>

#define BLOCK		(64u << 10)
#define BLOCKS		64u		/* 4 MiB of the disk */
#define DRIFT_NS	100000000ll	/* realtime - monotonic may move by this much */
#define MAX_THREADS	64

struct worker {
	pthread_t thread;
	unsigned int id, rounds;
	uint64_t *mem;
	size_t words;
	int64_t last_mono, last_real, offset0, pause_max;
};

static struct worker workers[MAX_THREADS];
static unsigned int errors, stop;	/* __atomic */
static const char *disk = "/dev/vda";
static const char *status_file, *stop_file;

/* The first line of STATUS, with a space before it, or "". */
static const char *device_status(void)
{
	static char line[256];
	FILE *f;

	line[0] = 0;
	if (!status_file)
		return line;
	f = fopen(status_file, "r");
	line[0] = ' ';
	if (!f || !fgets(line + 1, sizeof(line) - 1, f))
		snprintf(line, sizeof(line), " status=unreadable(%d)", errno);
	if (f)
		fclose(f);
	line[strcspn(line, "\n")] = 0;
	return line;
}

/* Write "1" to STOP. */
static void stop_device(void)
{
	int fd;

	if (!stop_file)
		return;
	fd = open(stop_file, O_WRONLY);
	if (fd < 0 || write(fd, "1", 1) != 1)
		printf("klu-guest ERROR cannot stop the device through %s: %d\n", stop_file,
		       errno);
	if (fd >= 0)
		close(fd);
}

static int64_t now(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void error(struct worker *w, const char *what, unsigned long long a,
		  unsigned long long b)
{
	__atomic_add_fetch(&errors, 1, __ATOMIC_RELAXED);
	printf("klu-guest ERROR thread %u: %s (0x%llx, 0x%llx)\n", w->id, what, a, b);
}

/*
 * Both clocks, against this thread's last reading.  CLOCK_REALTIME is read between two
 * reads of CLOCK_MONOTONIC: a thread that was not running between them (a move's
 * blackout, the emulated host's scheduling) widens the bracket, which the drift check
 * allows for, rather than take the gap for a drift.
 */
static void clocks(struct worker *w)
{
	int64_t mono = now(CLOCK_MONOTONIC), real = now(CLOCK_REALTIME);
	int64_t mono2 = now(CLOCK_MONOTONIC), off = real - mono;

	if (mono < w->last_mono || mono2 < mono)
		error(w, "CLOCK_MONOTONIC went back", w->last_mono, mono);
	if (real < w->last_real)
		error(w, "CLOCK_REALTIME went back", w->last_real, real);
	if (off - w->offset0 > DRIFT_NS + (mono2 - mono) || w->offset0 - off > DRIFT_NS) {
		error(w, "CLOCK_REALTIME drifted from CLOCK_MONOTONIC (ns)", w->offset0, off);
		w->offset0 = off;
	}
	mono = mono2;
	if (mono - w->last_mono > w->pause_max)
		w->pause_max = mono - w->last_mono;
	w->last_mono = mono;
	w->last_real = real;
}

static uint64_t pattern(unsigned int id, unsigned int round, size_t word)
{
	return ((uint64_t)id << 56 | (uint64_t)round << 36 | word) * 0x9e3779b97f4a7c15ull;
}

static void memory_round(struct worker *w, unsigned int round)
{
	size_t i;

	for (i = 0; i < w->words; i++) {
		if (!(i % 512))
			clocks(w);
		if (round && w->mem[i] != pattern(w->id, round - 1, i)) {
			error(w, "memory word changed", i, w->mem[i]);
			break;
		}
		w->mem[i] = pattern(w->id, round, i);
	}
}

static void disk_round(struct worker *w, int fd, uint64_t *buf, unsigned int round)
{
	unsigned int b = round % BLOCKS, i;
	off_t at = (off_t)b * BLOCK;

	for (i = 0; i < BLOCK / 8; i++)
		buf[i] = pattern(0, round, i) ^ b;
	if (pwrite(fd, buf, BLOCK, at) != BLOCK) {
		error(w, "disk write", b, errno);
		return;
	}
	if (!round)
		return;
	b = (round - 1) % BLOCKS;
	at = (off_t)b * BLOCK;
	if (pread(fd, buf, BLOCK, at) != BLOCK) {
		error(w, "disk read", b, errno);
		return;
	}
	for (i = 0; i < BLOCK / 8; i++)
		if (buf[i] != (pattern(0, round - 1, i) ^ b)) {
			error(w, "disk block changed", b, i);
			return;
		}
}

static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t *buf = NULL;
	int fd = -1;

	if (!w->id) {
		fd = open(disk, O_RDWR | O_DIRECT | O_SYNC);
		if (fd < 0 || posix_memalign((void **)&buf, 4096, BLOCK))
			error(w, "cannot open the disk", 0, errno);
	}
	w->last_mono = now(CLOCK_MONOTONIC);
	w->last_real = now(CLOCK_REALTIME);
	w->offset0 = w->last_real - w->last_mono;
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		memory_round(w, w->rounds);
		if (buf && fd >= 0)
			disk_round(w, fd, buf, w->rounds);
		__atomic_store_n(&w->rounds, w->rounds + 1, __ATOMIC_RELEASE);
	}
	/* The last round's memory is checked once more, so that no round goes unchecked. */
	memory_round(w, w->rounds);
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	struct pollfd in = { .fd = 0, .events = POLLIN };
	unsigned int n, i, last = ~0u;
	int64_t printed = 0, pause_max = 0, t;
	char line[64];
	size_t mib = 16;
	int opt;

	while ((opt = getopt(argc, argv, "m:d:s:x:")) != -1) {
		if (opt == 'm') {
			mib = strtoul(optarg, NULL, 0);
		} else if (opt == 'd') {
			disk = optarg;
		} else if (opt == 's') {
			status_file = optarg;
		} else if (opt == 'x') {
			stop_file = optarg;
		} else {
			fprintf(stderr, "usage: %s [-m MIB] [-d DISK] [-s STATUS -x STOP]\n",
				argv[0]);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	n = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
	printf("klu-guest start threads=%u memory=%zu MiB each disk=%s\n", n, mib, disk);
	for (i = 0; i < n; i++) {
		workers[i].id = i;
		workers[i].words = mib << 17;
		workers[i].mem = malloc(workers[i].words * 8);
		if (!workers[i].mem ||
		    pthread_create(&workers[i].thread, NULL, work, &workers[i])) {
			printf("klu-guest ERROR setup: thread %u\n", i);
			return 1;
		}
	}
	/* Poll the console a few times a second, and report the first thread's rounds. */
	while (poll(&in, 1, 200) <= 0) {
		t = now(CLOCK_MONOTONIC);
		i = __atomic_load_n(&workers[0].rounds, __ATOMIC_ACQUIRE);
		if (i != last && t - printed >= 500000000ll) {
			printf("klu-guest round %u pause_max_us %lld%s\n", i,
			       (long long)workers[0].pause_max / 1000, device_status());
			printed = t;
			last = i;
		}
	}
	/* The line itself, so that a second one can be waited for. */
	if (read(0, line, sizeof(line)) < 0)
		printf("klu-guest ERROR reading the console: %d\n", errno);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < n; i++) {
		pthread_join(workers[i].thread, NULL);
		if (workers[i].pause_max > pause_max)
			pause_max = workers[i].pause_max;
	}
	stop_device();
	printf("klu-guest done rounds=%u errors=%u pause_max_us=%lld%s\n", workers[0].rounds,
	       errors, (long long)pause_max / 1000, device_status());
	sync();
	if (stop_file)
		poll(&in, 1, -1);
	reboot(RB_POWER_OFF);
	return 0;
}
