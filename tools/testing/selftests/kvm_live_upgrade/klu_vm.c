// SPDX-License-Identifier: GPL-2.0
/*
 * Host side of the kvm_live_upgrade selftest VM runner.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "klu_vm.h"

extern const uint8_t klu_guest_image[];
extern const uint8_t klu_guest_image_end[];

void klu_fail(const char *fmt, ...)
{
	va_list ap;

	printf("not ok 1 - ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(KSFT_FAIL);
}

void klu_skip(const char *fmt, ...)
{
	va_list ap;

	printf("ok 1 # SKIP ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(KSFT_SKIP);
}

uint64_t klu_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

bool klu_go_on(const char *stop_file, uint64_t start_ns, unsigned int seconds)
{
	if (stop_file)
		return access(stop_file, F_OK) != 0;
	return klu_now_ns() - start_ns < seconds * 1000000000ull;
}

bool klu_read_line(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	bool ok;

	if (!f)
		return false;
	ok = fgets(buf, size, f);
	fclose(f);
	if (ok)
		buf[strcspn(buf, "\n")] = 0;
	return ok;
}

int klu_thin_vm_id(void)
{
	char path[300], buf[64];
	struct dirent *d;
	DIR *dir = opendir("/sys/kernel/kvm_thin/vms");
	int id = -1;

	while (dir && (d = readdir(dir))) {
		snprintf(path, sizeof(path), "/sys/kernel/kvm_thin/vms/%s/pid", d->d_name);
		/* ids only grow: the highest is the newest, whatever order readdir gives */
		if (d->d_name[0] != '.' && klu_read_line(path, buf, sizeof(buf)) &&
		    atoi(buf) == getpid() && atoi(d->d_name) > id)
			id = atoi(d->d_name);
	}
	if (dir)
		closedir(dir);
	return id;
}

void klu_vm_msi_irqfd_on(struct klu_vm *vm, uint32_t gsi, uint32_t vector, int efd)
{
	struct {
		struct kvm_irq_routing r;
		struct kvm_irq_routing_entry e[1];
	} routing = {
		.r.nr = 1,
		.e[0] = {
			.gsi = gsi,
			.type = KVM_IRQ_ROUTING_MSI,
			.u.msi = { .address_lo = 0xfee00000, .data = vector },
		},
	};
	struct kvm_irqfd irqfd = { .fd = efd, .gsi = gsi };

	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQFD) <= 0)
		klu_skip("KVM has no irqfd (KVM_CAP_IRQFD)");
	if (ioctl(vm->vm_fd, KVM_SET_GSI_ROUTING, &routing) < 0)
		klu_fail("KVM_SET_GSI_ROUTING: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0)
		klu_fail("KVM_IRQFD: %s", strerror(errno));
}

int klu_vm_msi_irqfd(struct klu_vm *vm, uint32_t gsi, uint32_t vector)
{
	int efd = eventfd(0, EFD_CLOEXEC);

	if (efd < 0)
		klu_fail("eventfd: %s", strerror(errno));
	klu_vm_msi_irqfd_on(vm, gsi, vector, efd);
	return efd;
}

static void flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->s = 1;
	s->db = 1;
	s->g = 1;
}

static void vcpu_setup(struct klu_vm *vm, int i)
{
	struct kvm_sregs sregs;
	int fd = vm->vcpu_fd[i];

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		klu_fail("KVM_GET_SREGS: %s", strerror(errno));
	flat_segment(&sregs.cs, 0x8, 0xb);
	flat_segment(&sregs.ds, 0x10, 0x3);
	sregs.es = sregs.ds;
	sregs.fs = sregs.ds;
	sregs.gs = sregs.ds;
	sregs.ss = sregs.ds;
	sregs.cr0 |= 1;		/* PE, no paging */
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		klu_fail("KVM_SET_SREGS: %s", strerror(errno));

	klu_vcpu_restart(vm, i);
}

/* Point vCPU @i at the guest's entry, with its own stack and its index in EDI. */
void klu_vcpu_restart(struct klu_vm *vm, int i)
{
	struct kvm_regs regs;

	memset(&regs, 0, sizeof(regs));
	regs.rip = KLU_CODE_GPA;
	regs.rsp = KLU_STACK_TOP - i * KLU_STACK_SIZE;
	regs.rflags = 0x2;
	regs.rdi = i;
	if (ioctl(vm->vcpu_fd[i], KVM_SET_REGS, &regs) < 0)
		klu_fail("KVM_SET_REGS of vCPU %d: %s", i, strerror(errno));
}

/* The vCPU features KVM can give a guest: what KLU_VM_IRQCHIP guests run with. */
static struct kvm_cpuid2 *supported_cpuid(int kvm_fd)
{
	int nent = 100;
	struct kvm_cpuid2 *c;

	for (;;) {
		c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));
		if (!c)
			klu_fail("out of memory");
		c->nent = nent;
		if (!ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c))
			return c;
		free(c);
		if (errno != E2BIG || nent > 4000)
			klu_fail("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		nent *= 2;
	}
}

bool klu_vm_has_cpuid(struct klu_vm *vm, uint32_t leaf, int reg, int bit)
{
	struct kvm_cpuid2 *c = vm->cpuid;
	uint32_t i, val;

	for (i = 0; c && i < c->nent; i++) {
		if (c->entries[i].function != leaf || c->entries[i].index)
			continue;
		val = reg == 'a' ? c->entries[i].eax : reg == 'b' ? c->entries[i].ebx :
		      reg == 'c' ? c->entries[i].ecx : c->entries[i].edx;
		return val & (1u << bit);
	}
	return false;
}

struct klu_vm *klu_vm_create(size_t mem_size, int nr_vcpus)
{
	return klu_vm_new(mem_size, nr_vcpus, 0);
}

/* @mem NULL: anonymous memory of its own; else the caller's, @mem_size page-aligned. */
static struct klu_vm *vm_new(void *mem, size_t mem_size, int nr_vcpus, unsigned int flags)
{
	size_t image = klu_guest_image_end - klu_guest_image;
	struct kvm_userspace_memory_region region;
	struct klu_vm *vm;
	int i, ver;

	if (nr_vcpus < 1 || nr_vcpus > KLU_MAX_VCPUS)
		klu_fail("bad vCPU count %d", nr_vcpus);
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		klu_fail("out of memory");
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		klu_skip("/dev/kvm: %s (no KVM module loaded, or no VMX/SVM)", strerror(errno));
	ver = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (ver < 0 && errno == ENODEV)	/* kvm_thin's /dev/kvm, no core behind it */
		klu_skip("/dev/kvm: %s (kvm_thin is loaded but no KVM core is)", strerror(errno));
	if (ver != KVM_API_VERSION)
		klu_fail("KVM_GET_API_VERSION returned %d, want %d", ver, KVM_API_VERSION);
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		klu_fail("KVM_CREATE_VM: %s", strerror(errno));
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) < 0)
		klu_fail("KVM_SET_TSS_ADDR: %s", strerror(errno));
	if (flags & KLU_VM_IRQCHIP) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) <= 0)
			klu_skip("KVM has no in-kernel irqchip (KVM_CAP_IRQCHIP)");
		if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
			klu_fail("KVM_CREATE_IRQCHIP: %s", strerror(errno));
		vm->cpuid = supported_cpuid(vm->kvm_fd);
		/* KVM tells of its TSC-deadline timer by a capability, not in the CPUID. */
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0)
			for (i = 0; i < (int)vm->cpuid->nent; i++)
				if (vm->cpuid->entries[i].function == 1)
					vm->cpuid->entries[i].ecx |= 1u << 24;
	}

	if (mem) {
		vm->mem = mem;
		vm->caller_mem = true;
	} else {
		mem_size = (mem_size + 0xfffff) & ~(size_t)0xfffff;
		vm->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (vm->mem == MAP_FAILED)
			klu_fail("mmap guest memory (%zu bytes): %s", mem_size, strerror(errno));
	}
	vm->mem_size = mem_size;
	if (image > KLU_STACK_TOP - 8 * KLU_STACK_SIZE - KLU_CODE_GPA)
		klu_fail("guest image too large (%zu bytes)", image);
	if (!(flags & KLU_VM_KEEP_MEM))
		memcpy(vm->mem + KLU_CODE_GPA, klu_guest_image, image);

	region = (struct kvm_userspace_memory_region) {
		.slot = 0,
		.guest_phys_addr = 0,
		.memory_size = mem_size,
		.userspace_addr = (uintptr_t)vm->mem,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0)
		klu_fail("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));

	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if ((long)vm->run_size <= 0)
		klu_fail("KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	vm->nr_vcpus = nr_vcpus;
	for (i = 0; i < nr_vcpus; i++) {
		vm->vcpu_fd[i] = ioctl(vm->vm_fd, KVM_CREATE_VCPU, i);
		if (vm->vcpu_fd[i] < 0)
			klu_fail("KVM_CREATE_VCPU %d: %s", i, strerror(errno));
		vm->run[i] = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED,
				  vm->vcpu_fd[i], 0);
		if (vm->run[i] == MAP_FAILED)
			klu_fail("mmap kvm_run of vCPU %d: %s", i, strerror(errno));
		if (vm->cpuid && ioctl(vm->vcpu_fd[i], KVM_SET_CPUID2, vm->cpuid) < 0)
			klu_fail("KVM_SET_CPUID2 of vCPU %d: %s", i, strerror(errno));
		vcpu_setup(vm, i);
		if (flags & KLU_VM_IRQCHIP) {
			/* With an in-kernel LAPIC the others would wait for INIT and SIPI. */
			struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

			if (ioctl(vm->vcpu_fd[i], KVM_SET_MP_STATE, &mp) < 0)
				klu_fail("KVM_SET_MP_STATE of vCPU %d: %s", i, strerror(errno));
		}
	}
	return vm;
}

struct klu_vm *klu_vm_new(size_t mem_size, int nr_vcpus, unsigned int flags)
{
	if (flags & KLU_VM_KEEP_MEM)
		klu_fail("KLU_VM_KEEP_MEM needs the caller's memory: klu_vm_new_mem()");
	return vm_new(NULL, mem_size, nr_vcpus, flags);
}

/*
 * A VM over memory the caller mapped (a shared memfd mapping, say), page-aligned and at
 * least KLU_STACK_TOP bytes; klu_vm_destroy() leaves it mapped.  The guest image is
 * loaded into it, unless KLU_VM_KEEP_MEM says it holds a guest already, whose vCPU
 * state the caller then restores over the fresh vCPUs' (set up as klu_vm_new() does).
 */
struct klu_vm *klu_vm_new_mem(void *mem, size_t mem_size, int nr_vcpus, unsigned int flags)
{
	size_t page = sysconf(_SC_PAGESIZE);

	if (!mem || (uintptr_t)mem % page || mem_size % page || mem_size < KLU_STACK_TOP)
		klu_fail("%s: memory %p of %zu bytes is not page-aligned or too small", __func__,
			 mem, mem_size);
	return vm_new(mem, mem_size, nr_vcpus, flags);
}

struct klu_params *klu_vm_params(struct klu_vm *vm)
{
	return (struct klu_params *)(vm->mem + KLU_PARAMS_GPA);
}

static const char *exit_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_HLT: return "HLT";
	case KVM_EXIT_MMIO: return "MMIO";
	case KVM_EXIT_SHUTDOWN: return "SHUTDOWN (triple fault)";
	case KVM_EXIT_FAIL_ENTRY: return "FAIL_ENTRY";
	case KVM_EXIT_INTERNAL_ERROR: return "INTERNAL_ERROR";
	default: return "unexpected";
	}
}

void klu_vcpu_run_to_done(struct klu_vm *vm, int vcpu, struct klu_result *res)
{
	struct kvm_run *run = vm->run[vcpu];
	uint32_t echo = 0;

	memset(res, 0, sizeof(*res));
	for (;;) {
		uint32_t *data;

		if (ioctl(vm->vcpu_fd[vcpu], KVM_RUN, 0) < 0) {
			if (errno == EINTR) {
				while (KLU_READ(vm->hold[vcpu])) {
					KLU_WRITE(vm->held[vcpu], 1);
					usleep(1000);
				}
				KLU_WRITE(vm->held[vcpu], 0);
				continue;
			}
			klu_fail("vCPU %d KVM_RUN: %s", vcpu, strerror(errno));
		}
		res->exits++;
		if (run->exit_reason == KVM_EXIT_MMIO) {	/* the MMIO echo */
			if (run->mmio.phys_addr != KLU_MMIO_ECHO || run->mmio.len != 4)
				klu_fail("vCPU %d: MMIO of %u bytes at 0x%llx", vcpu, run->mmio.len,
					 (unsigned long long)run->mmio.phys_addr);
			if (run->mmio.is_write)
				memcpy(&echo, run->mmio.data, 4);
			else
				memcpy(run->mmio.data, &echo, 4);
			continue;
		}
		if (run->exit_reason != KVM_EXIT_IO) {
			struct kvm_regs regs;

			ioctl(vm->vcpu_fd[vcpu], KVM_GET_REGS, &regs);
			klu_fail("vCPU %d: exit %u (%s) at rip 0x%llx", vcpu, run->exit_reason,
				 exit_name(run->exit_reason), (unsigned long long)regs.rip);
		}
		if (run->io.size != 4 || run->io.count != 1)
			klu_fail("vCPU %d: I/O of size %u count %u on port 0x%x", vcpu,
				 run->io.size, run->io.count, run->io.port);
		data = (uint32_t *)((uint8_t *)run + run->io.data_offset);
		if (run->io.direction == KVM_EXIT_IO_IN) {
			if (run->io.port != KLU_PORT_ECHO)
				klu_fail("vCPU %d: IN from port 0x%x", vcpu, run->io.port);
			*data = echo;
			continue;
		}
		switch (run->io.port) {
		case KLU_PORT_RESULT:
			if (res->nr_words == 16)
				klu_fail("vCPU %d: more than 16 results", vcpu);
			res->words[res->nr_words++] = *data;
			break;
		case KLU_PORT_PROGRESS:
			res->progress++;
			break;
		case KLU_PORT_ECHO:
			echo = *data;
			break;
		case KLU_PORT_DONE:
			res->done_status = *data;
			return;
		default:
			klu_fail("vCPU %d: OUT to port 0x%x", vcpu, run->io.port);
		}
	}
}

static void klu_hold_signal(int sig)
{
}

/*
 * Take @vcpu (run by @thread in klu_vcpu_run_to_done()) out of KVM_RUN and keep it out
 * until klu_vcpu_release(), so that its state can be read.  False if it does not leave
 * within 2 s.
 */
bool klu_vcpu_hold(struct klu_vm *vm, int vcpu, pthread_t thread)
{
	struct sigaction sa = { .sa_handler = klu_hold_signal };	/* no SA_RESTART */
	uint64_t start = klu_now_ns();

	sigaction(SIGUSR1, &sa, NULL);
	KLU_WRITE(vm->hold[vcpu], 1);
	while (!KLU_READ(vm->held[vcpu])) {
		if (klu_now_ns() - start > 2000000000ull)
			return false;
		pthread_kill(thread, SIGUSR1);
		usleep(1000);
	}
	return true;
}

void klu_vcpu_release(struct klu_vm *vm, int vcpu)
{
	KLU_WRITE(vm->hold[vcpu], 0);
}

/* The vectors set in one of the LAPIC's 256-bit registers (ISR, TMR, IRR) at @reg. */
static void klu_dump_vectors(const char *name, const char *regs, unsigned int reg)
{
	unsigned int i, v;
	uint32_t w;

	printf(" %s:", name);
	for (i = 0; i < 8; i++) {
		memcpy(&w, regs + reg + i * 16, 4);
		for (v = 0; v < 32; v++)
			if (w & (1u << v))
				printf(" 0x%02x", i * 32 + v);
	}
}

static uint32_t klu_apic_reg(const struct kvm_lapic_state *l, unsigned int reg)
{
	uint32_t w;

	memcpy(&w, l->regs + reg, 4);
	return w;
}

/* What KVM holds of a vCPU's interrupt state, as "#" lines (the vCPU must be held). */
void klu_vcpu_dump(struct klu_vm *vm, int vcpu)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[2];
	} msrs = { .hdr.nmsrs = 2, .e = { { .index = 0x10 }, { .index = 0x6e0 } } };
	int fd = vm->vcpu_fd[vcpu];
	struct kvm_vcpu_events ev;
	struct kvm_lapic_state l;
	struct kvm_mp_state mp;
	struct kvm_regs regs;

	if (ioctl(fd, KVM_GET_REGS, &regs) == 0)
		printf("#   vCPU %d: rip 0x%llx rflags 0x%llx\n", vcpu, regs.rip, regs.rflags);
	if (ioctl(fd, KVM_GET_MP_STATE, &mp) == 0)
		printf("#   vCPU %d: MP state %u\n", vcpu, mp.mp_state);
	if (ioctl(fd, KVM_GET_VCPU_EVENTS, &ev) == 0) {
		printf("#   vCPU %d: interrupt injected %u nr 0x%x shadow %u, ", vcpu,
		       ev.interrupt.injected, ev.interrupt.nr, ev.interrupt.shadow);
		printf("NMI pending %u injected %u, exception %u/%u nr %u\n", ev.nmi.pending,
		       ev.nmi.injected, ev.exception.injected, ev.exception.pending,
		       ev.exception.nr);
	}
	if (ioctl(fd, KVM_GET_MSRS, &msrs) == 2)
		printf("#   vCPU %d: TSC %llu, TSC deadline MSR %llu\n", vcpu, msrs.e[0].data,
		       msrs.e[1].data);
	if (ioctl(fd, KVM_GET_LAPIC, &l) == 0) {
		printf("#   vCPU %d: LAPIC TPR 0x%x PPR 0x%x SVR 0x%x LVTT 0x%x", vcpu,
		       klu_apic_reg(&l, 0x80), klu_apic_reg(&l, 0xa0), klu_apic_reg(&l, 0xf0),
		       klu_apic_reg(&l, 0x320));
		klu_dump_vectors("ISR", l.regs, 0x100);
		klu_dump_vectors("IRR", l.regs, 0x200);
		printf("\n");
	}
	fflush(stdout);
}

void klu_vm_destroy(struct klu_vm *vm)
{
	int i;

	for (i = 0; i < vm->nr_vcpus; i++) {
		munmap(vm->run[i], vm->run_size);
		close(vm->vcpu_fd[i]);
	}
	close(vm->vm_fd);
	if (!vm->caller_mem)
		munmap(vm->mem, vm->mem_size);
	close(vm->kvm_fd);
	free(vm->cpuid);
	free(vm);
}
