// SPDX-License-Identifier: GPL-2.0
/*
 * vm_unmovable: a VM with a kvm-vfio device moves; a VM that a live move cannot carry
 * is refused, and runs on.
 *
 * On a kvm-live-upgrade host with two cores loaded, the test's own VM:
 *   1. probes for a kvm-vfio device (KVM_CREATE_DEVICE_TEST), which creates nothing,
 *      so the VM must stay movable, and moves to the other core and back;
 *   2. creates the kvm-vfio device, as QEMU does for every VM with a vfio-pci device:
 *      the VM must stay movable and move there and back, and the device's file must
 *      answer after the moves (KVM_HAS_DEVICE_ATTR of a group add: the new core's
 *      device).  With its VFIO groups: vm_irte, in the irqbypass suite;
 *   3. gets a Hyper-V event channel (KVM_HYPERV_EVENTFD), which a move cannot replay:
 *      the VM's movable file must say why, and a move of it must fail with
 *      EOPNOTSUPP, leave it on its core and say "failed ... error=-95" in its
 *      last_move;
 *   4. runs its guest (port-I/O echoes, the sum checked) after each step.
 * Skips without kvm_thin, with fewer than two cores, or without kvm-vfio in KVM.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/ioctl.h>

#include "klu_thin.h"
#include "klu_vm.h"

#define THIN	"/sys/kernel/kvm_thin"

static void vm_file(int id, const char *name, char *buf, size_t size)
{
	char path[128];

	snprintf(path, sizeof(path), THIN "/vms/%d/%s", id, name);
	if (!klu_read_line(path, buf, size))
		klu_fail("cannot read %s: %s", path, strerror(errno));
}

/* Write "@id @tag" to the move trigger: 0, or the errno of the write. */
static int move_vm(int id, const char *tag)
{
	char cmd[64];
	int fd, n, err = 0;

	fd = open(THIN "/move", O_WRONLY);
	if (fd < 0)
		klu_fail("open " THIN "/move: %s", strerror(errno));
	n = snprintf(cmd, sizeof(cmd), "%d %s\n", id, tag);
	if (write(fd, cmd, n) != n)
		err = errno;
	close(fd);
	return err;
}

/* The guest echoes 1000 port-I/O round trips; their sum must come back. */
static void run_guest(struct klu_vm *vm, const char *when)
{
	static int rounds;
	struct klu_result res;
	uint32_t n = 1000;

	*klu_vm_params(vm) = (struct klu_params) {
		.mode = KLU_MODE_EXITS,
		.iterations = n,
		.exits = KLU_EXITS_PIO,
	};
	if (rounds++)
		klu_vcpu_restart(vm, 0);
	klu_vcpu_run_to_done(vm, 0, &res);
	if (res.nr_words != 1 || res.words[0] != n * (n - 1) / 2)
		klu_fail("%s: guest echo sum 0x%x, want 0x%x", when, res.words[0], n * (n - 1) / 2);
	printf("# %s: the guest ran, sum checked\n", when);
}

int main(void)
{
	struct kvm_create_device cd = { .type = KVM_DEV_TYPE_VFIO };
	char core[256], other[256] = "", buf[256];
	struct dirent *d;
	struct klu_vm *vm;
	int id, err;
	DIR *dir;

	printf("TAP version 13\n1..1\n");
	fflush(stdout);
	if (access(THIN, F_OK))
		klu_skip("kvm_thin is not loaded");
	vm = klu_vm_create(KLU_DATA_GPA, 1);

	/* Our VM, and a core it is not on. */
	id = klu_thin_vm_id();
	if (id < 0)
		klu_fail("no VM of pid %d in " THIN "/vms", getpid());
	vm_file(id, "core", core, sizeof(core));
	dir = opendir(THIN "/cores");
	while (dir && (d = readdir(dir)))
		if (d->d_name[0] != '.' && strcmp(d->d_name, core))
			snprintf(other, sizeof(other), "%s", d->d_name);
	if (dir)
		closedir(dir);
	if (!other[0])
		klu_skip("a live move needs two loaded cores, only %s is loaded", core);
	printf("# VM %d on core %s; the other core is %s\n", id, core, other);
	run_guest(vm, "before");

	/* 1. A probe creates nothing: the VM stays movable, and moves. */
	cd.flags = KVM_CREATE_DEVICE_TEST;
	if (ioctl(vm->vm_fd, KVM_CREATE_DEVICE, &cd) < 0)
		klu_skip("KVM_CREATE_DEVICE_TEST of kvm-vfio: %s (no kvm-vfio in this KVM)",
			 strerror(errno));
	vm_file(id, "movable", buf, sizeof(buf));
	if (strcmp(buf, "yes"))
		klu_fail("after a KVM_CREATE_DEVICE_TEST probe, movable says '%s', want yes", buf);
	err = move_vm(id, other);
	if (err)
		klu_fail("move of VM %d to %s after a probe: %s", id, other, strerror(err));
	err = move_vm(id, core);
	if (err)
		klu_fail("move of VM %d back to %s: %s", id, core, strerror(err));
	run_guest(vm, "after a probe and two moves");

	/* 2. A real kvm-vfio device: the VM moves with it, and the device works after. */
	cd.flags = 0;
	if (ioctl(vm->vm_fd, KVM_CREATE_DEVICE, &cd) < 0)
		klu_fail("KVM_CREATE_DEVICE of kvm-vfio: %s", strerror(errno));
	vm_file(id, "movable", buf, sizeof(buf));
	if (strcmp(buf, "yes"))
		klu_fail("with a kvm-vfio device, movable says '%s', want yes", buf);
	err = move_vm(id, other);
	if (!err)
		err = move_vm(id, core);
	if (err)
		klu_fail("move of VM %d with a kvm-vfio device: %s", id, strerror(err));
	{
		struct kvm_device_attr attr = {
			.group = KVM_DEV_VFIO_GROUP, .attr = KVM_DEV_VFIO_GROUP_ADD,
		};

		if (ioctl(cd.fd, KVM_HAS_DEVICE_ATTR, &attr) < 0)
			klu_fail("after two moves, KVM_HAS_DEVICE_ATTR on the kvm-vfio device: %s",
				 strerror(errno));
	}
	run_guest(vm, "with a kvm-vfio device, after two moves");

	/* 3. A Hyper-V event channel: the VM cannot move, and says why. */
	err = klu_thin_unmovable(vm);
	if (err)
		klu_skip("KVM_HYPERV_EVENTFD: %s", strerror(err));
	vm_file(id, "movable", buf, sizeof(buf));
	printf("# movable: %s\n", buf);
	if (strncmp(buf, "no: ", 4) || !strstr(buf, "cannot be replayed"))
		klu_fail("with a Hyper-V event channel, movable says '%s'", buf);
	err = move_vm(id, other);
	if (err != EOPNOTSUPP)
		klu_fail("move of VM %d with a Hyper-V event channel: %s, want EOPNOTSUPP", id,
			 err ? strerror(err) : "it moved");
	vm_file(id, "core", buf, sizeof(buf));
	if (strcmp(buf, core))
		klu_fail("after the refused move VM %d is on '%s', want %s", id, buf, core);
	vm_file(id, "last_move", buf, sizeof(buf));
	printf("# last_move: %s\n", buf);
	if (strncmp(buf, "failed ", 7) || !strstr(buf, "error=-95"))
		klu_fail("last_move is '%s', want 'failed ... error=-95'", buf);
	run_guest(vm, "after the refused move");

	klu_vm_destroy(vm);
	printf("ok 1 - a VM with a kvm-vfio device moves; %s its move fails (EOPNOTSUPP)\n",
	       "with a Hyper-V event channel");
	return KSFT_PASS;
}
