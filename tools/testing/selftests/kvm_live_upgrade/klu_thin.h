/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvm_thin's sysfs files for the selftests that move VMs (vm_bypass, vm_irte): the move
 * trigger, a VM's files, the loaded cores and the irqbypass counters; and the checks
 * that print what they wanted and what they saw.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KLU_THIN_H
#define KLU_THIN_H

#include <stdbool.h>
#include <stddef.h>

#include "klu_vm.h"

#define KLU_THIN	"/sys/kernel/kvm_thin"

/* How many klu_check()s ran, and how many of them failed. */
extern int klu_nr_checks, klu_nr_failed;

/* One check: "# ok:   ..." or "# FAIL: ..." and the message; returns @ok. */
bool klu_check(bool ok, const char *fmt, ...) __printf(2, 3);

/* 0, or the errno of writing @s to @path in one write. */
int klu_write_file(const char *path, const char *s);
/* VM @id's file @name (its first line), or "(cannot read ...)" in @buf. */
void klu_thin_vm_file(int id, const char *name, char *buf, size_t size);
/* Move VM @id to core @tag: 0, or the errno of the write to the move trigger. */
int klu_thin_move(int id, const char *tag);
/* A skip unless kvm_thin and two cores are loaded: what a test that moves VMs needs. */
void klu_thin_need_move(void);
bool klu_thin_fault_injection(void);
/* How many cores are loaded; @other gets the first by name that is not @not, if any. */
int klu_thin_cores(const char *not, char *other, size_t size);
/*
 * Cores A and B of a test that moves VM @id between them: @a defaults to the VM's core
 * and @b to the first other one by name.  Fails unless B is loaded and is not A; moves
 * the VM to A if it is elsewhere.
 */
void klu_thin_pick_cores(int id, char *a, char *b, size_t size);
/*
 * Checks that VM @id's last_move says "@result from=@from to=@to " and, with @kept >= 0,
 * has the fields "irqbypass_kept=@kept irqbypass_fallback=@fallback".
 */
bool klu_thin_check_last_move(int id, const char *when, const char *result,
			      const char *from, const char *to, int kept, int fallback);
/*
 * Make @vm unmovable the way a VMM would by accident: an ioctl kvm_thin cannot replay
 * (KVM_HYPERV_EVENTFD, a Hyper-V event channel on a new eventfd).  0, or the errno.
 */
int klu_thin_unmovable(struct klu_vm *vm);
/* Field @name (a number) of VM @id's last_move, or -1 if it has none. */
long klu_thin_last_move_field(int id, const char *name);
/* The mode of kvm_thin's irqbypass file into @mode ("keep", "fallback"); false if none. */
bool klu_thin_bypass_mode(char *mode, size_t size);
/* Counter @name of kvm_thin's irqbypass file, or -1 if it cannot be read. */
long klu_thin_bypass_field(const char *name);

#endif
