// SPDX-License-Identifier: GPL-2.0
/*
 * kvm_thin's sysfs files for the selftests that move VMs: see klu_thin.h.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "klu_thin.h"

int klu_nr_checks, klu_nr_failed;

bool klu_check(bool ok, const char *fmt, ...)
{
	va_list ap;

	klu_nr_checks++;
	klu_nr_failed += !ok;
	printf("# %s ", ok ? "ok:  " : "FAIL:");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	return ok;
}

int klu_write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return errno;
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		err = errno ? errno : EIO;
	close(fd);
	return err;
}

void klu_thin_vm_file(int id, const char *name, char *buf, size_t size)
{
	char path[128];

	snprintf(path, sizeof(path), KLU_THIN "/vms/%d/%s", id, name);
	if (!klu_read_line(path, buf, size))
		snprintf(buf, size, "(cannot read %s: %s)", path, strerror(errno));
}

int klu_thin_move(int id, const char *tag)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "%d %s\n", id, tag);
	return klu_write_file(KLU_THIN "/move", cmd);
}

int klu_thin_cores(const char *not, char *other, size_t size)
{
	struct dirent *d;
	DIR *dir = opendir(KLU_THIN "/cores");
	int n = 0;

	if (other)
		other[0] = 0;
	while (dir && (d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		n++;
		if (other && strcmp(d->d_name, not) && (!other[0] || strcmp(d->d_name, other) < 0))
			snprintf(other, size, "%s", d->d_name);
	}
	if (dir)
		closedir(dir);
	return n;
}

void klu_thin_pick_cores(int id, char *a, char *b, size_t size)
{
	char core[256], path[300];
	int err;

	klu_thin_vm_file(id, "core", core, sizeof(core));
	if (!a[0])
		snprintf(a, size, "%s", core);
	if (!b[0])
		klu_thin_cores(a, b, size);
	snprintf(path, sizeof(path), KLU_THIN "/cores/%s", b);
	if (!strcmp(a, b) || access(path, F_OK))
		klu_fail("core B '%s' is not loaded, or is core A", b);
	err = strcmp(core, a) ? klu_thin_move(id, a) : 0;
	if (err)
		klu_fail("moving VM %d from %s to core A %s: %s", id, core, a, strerror(err));
}

bool klu_thin_check_last_move(int id, const char *when, const char *result,
			      const char *from, const char *to, int kept, int fallback)
{
	char buf[512], head[128], fields[96], *at;
	size_t fl;

	klu_thin_vm_file(id, "last_move", buf, sizeof(buf));
	snprintf(head, sizeof(head), "%s from=%s to=%s ", result, from, to);
	if (kept < 0)
		fields[0] = 0;
	else
		snprintf(fields, sizeof(fields), " irqbypass_kept=%d irqbypass_fallback=%d", kept,
			 fallback);
	/* The fields as whole words: kvm_thin may add others after them. */
	fl = strlen(fields);
	at = strstr(buf, fields);
	return klu_check(!strncmp(buf, head, strlen(head)) &&
			 (!fl || (at && (at[fl] == 0 || at[fl] == ' '))),
			 "%s: last_move want '%s...%s%s', saw '%s'", when, head, fields,
			 fl ? "..." : "", buf);
}

/* The number after " @name=" in @line, or -1. */
static long line_field(const char *line, const char *name)
{
	size_t len = strlen(name);
	const char *p = line;

	while ((p = strstr(p, name))) {
		if ((p == line || p[-1] == ' ') && p[len] == '=')
			return strtol(p + len + 1, NULL, 10);
		p += len;
	}
	return -1;
}

/*
 * Was kvm_thin loaded with fault_injection=1, so that fail_move_step can be set?  The
 * test beds load it so; a host in production does not.
 */
bool klu_thin_fault_injection(void)
{
	char buf[8] = "";

	return klu_read_line("/sys/module/kvm_thin/parameters/fault_injection", buf,
			     sizeof(buf)) && buf[0] == 'Y';
}

void klu_thin_need_move(void)
{
	if (access(KLU_THIN, F_OK))
		klu_skip("kvm_thin is not loaded");
	if (klu_thin_cores("", NULL, 0) < 2)
		klu_skip("a live move needs two loaded cores");
}

int klu_thin_unmovable(struct klu_vm *vm)
{
	struct kvm_hyperv_eventfd hv = { .conn_id = 1 };

	hv.fd = eventfd(0, EFD_CLOEXEC);
	if (hv.fd < 0)
		return errno;
	/* The eventfd stays open: KVM holds its context, not the file. */
	return ioctl(vm->vm_fd, KVM_HYPERV_EVENTFD, &hv) ? errno : 0;
}

long klu_thin_last_move_field(int id, const char *name)
{
	char buf[512];

	klu_thin_vm_file(id, "last_move", buf, sizeof(buf));
	return line_field(buf, name);
}

bool klu_thin_bypass_mode(char *mode, size_t size)
{
	char line[512];
	size_t n;

	if (!klu_read_line(KLU_THIN "/irqbypass", line, sizeof(line)) ||
	    strncmp(line, "mode=", 5))
		return false;
	n = strcspn(line + 5, " ");
	if (!n || n >= size)
		return false;
	memcpy(mode, line + 5, n);
	mode[n] = 0;
	return true;
}

long klu_thin_bypass_field(const char *name)
{
	char line[512];

	if (!klu_read_line(KLU_THIN "/irqbypass", line, sizeof(line)))
		return -1;
	return line_field(line, name);
}
