// SPDX-License-Identifier: GPL-2.0
/*
 * klu_stamp OUT CMD [ARG...]: run CMD with its standard output going through a pipe, and
 * write each line it prints to OUT (- for standard output), prefixed with the
 * CLOCK_MONOTONIC time in microseconds at which the line arrived.  Exits with CMD's exit
 * status (128 + signal if it was killed).  The vmmove suite uses it to time the output of
 * a guest that the unmodified QEMU runs, and the start of each move.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long long now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000ull + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	char line[4096];
	int fds[2], status;
	FILE *in, *out;
	pid_t pid;

	if (argc < 3) {
		fprintf(stderr, "usage: %s OUT CMD [ARG...]\n", argv[0]);
		return 2;
	}
	out = strcmp(argv[1], "-") ? fopen(argv[1], "w") : stdout;
	if (!out || pipe(fds)) {
		fprintf(stderr, "klu_stamp: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "klu_stamp: fork: %s\n", strerror(errno));
		return 2;
	}
	if (!pid) {
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		execvp(argv[2], argv + 2);
		fprintf(stderr, "klu_stamp: %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	in = fdopen(fds[0], "r");
	if (!in)
		return 2;
	while (fgets(line, sizeof(line), in)) {
		fprintf(out, "%llu %s", now_us(), line);
		if (!strchr(line, '\n'))
			fputc('\n', out);
		fflush(out);
	}
	fclose(out);
	if (waitpid(pid, &status, 0) < 0)
		return 2;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
