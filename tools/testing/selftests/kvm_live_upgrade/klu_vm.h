/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A small VM runner for the kvm_live_upgrade selftests: one guest image, flat 32-bit
 * protected mode, port I/O to talk to the host.  Built on /dev/kvm only, so the same
 * binary runs on the stock kvm modules, on our cores, and later through kvm_thin.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KLU_VM_H
#define KLU_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "klu_abi.h"

#define KSFT_PASS	0
#define KSFT_FAIL	1
#define KSFT_SKIP	4

struct klu_vm {
	int kvm_fd;
	int vm_fd;
	uint8_t *mem;
	size_t mem_size;
	int nr_vcpus;
	int vcpu_fd[KLU_MAX_VCPUS];
	struct kvm_run *run[KLU_MAX_VCPUS];
	size_t run_size;
	struct kvm_cpuid2 *cpuid;	/* with KLU_VM_IRQCHIP: what KVM supports */
	/* klu_vcpu_hold(): the vCPU's thread stays out of KVM_RUN while hold is set. */
	int hold[KLU_MAX_VCPUS];	/* KLU_READ/KLU_WRITE */
	int held[KLU_MAX_VCPUS];
	bool caller_mem;		/* klu_vm_new_mem(): @mem is the caller's to unmap */
};

/* klu_vm_new() flags */
#define KLU_VM_IRQCHIP	1	/* in-kernel LAPIC/IOAPIC/PIC, KVM's CPUID, all vCPUs run */
/* klu_vm_new_mem() only: the memory holds a guest already, load no image into it */
#define KLU_VM_KEEP_MEM	2

/* What one vCPU reported until it wrote KLU_PORT_DONE. */
struct klu_result {
	uint32_t words[16];
	int nr_words;
	uint64_t exits;
	uint64_t progress;
	uint32_t done_status;
};

#ifndef __printf
#define __printf(a, b)	__attribute__((format(printf, a, b)))
#endif
#ifndef __noreturn
#define __noreturn	__attribute__((noreturn))
#endif

void klu_fail(const char *fmt, ...) __noreturn __printf(1, 2);
void klu_skip(const char *fmt, ...) __noreturn __printf(1, 2);

struct klu_vm *klu_vm_create(size_t mem_size, int nr_vcpus);
struct klu_vm *klu_vm_new(size_t mem_size, int nr_vcpus, unsigned int flags);
struct klu_vm *klu_vm_new_mem(void *mem, size_t mem_size, int nr_vcpus, unsigned int flags);
bool klu_vm_has_cpuid(struct klu_vm *vm, uint32_t leaf, int reg, int bit);
struct klu_params *klu_vm_params(struct klu_vm *vm);
void klu_vcpu_restart(struct klu_vm *vm, int vcpu);
void klu_vcpu_run_to_done(struct klu_vm *vm, int vcpu, struct klu_result *res);
bool klu_vcpu_hold(struct klu_vm *vm, int vcpu, pthread_t thread);
void klu_vcpu_release(struct klu_vm *vm, int vcpu);
void klu_vcpu_dump(struct klu_vm *vm, int vcpu);
void klu_vm_destroy(struct klu_vm *vm);
/*
 * The VM's only GSI route: @gsi, an MSI with @vector to APIC ID 0 (fixed, physical);
 * and an irqfd on it, whose new eventfd is returned.  A skip without irqfds.
 */
int klu_vm_msi_irqfd(struct klu_vm *vm, uint32_t gsi, uint32_t vector);
/* The same route, and an irqfd on the caller's eventfd @efd (one another VM may use). */
void klu_vm_msi_irqfd_on(struct klu_vm *vm, uint32_t gsi, uint32_t vector, int efd);
uint64_t klu_now_ns(void);
/*
 * Whether a program's rounds go on.  With a stop file (-u FILE), until that file
 * exists: a test that moves the VM says when it is done with it, so the guest outlives
 * every move however slow the machine is.  Without one, until @seconds have passed
 * since @start_ns.
 */
bool klu_go_on(const char *stop_file, uint64_t start_ns, unsigned int seconds);
/* The first line of @path into @buf, its newline dropped; false if it cannot be read. */
bool klu_read_line(const char *path, char *buf, size_t size);
/* The id in /sys/kernel/kvm_thin/vms of this process's VM (the newest, if several), or -1. */
int klu_thin_vm_id(void);

#endif
