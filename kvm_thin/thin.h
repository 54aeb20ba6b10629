/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvm_thin internals.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KVM_THIN_H
#define KVM_THIN_H

#include <linux/cpuhotplug.h>
#include <linux/fs.h>
#include <linux/kobject.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/perf_event.h>
#include <linux/xarray.h>
#include <asm/reboot.h>
#include <kvm_thin/core_api.h>

#define KLU_TAG_MAX	16

/*
 * A core's own copies (klu_<tag>_<name>) of the kvm.ko exports that modules outside
 * KVM use, found when the core registers (exports.c).  Typed where they are called.
 */
struct klu_core_exports {
	void *gfn_to_memslot, *gfn_to_pfn, *kvm_is_visible_gfn, *kvm_get_kvm, *kvm_put_kvm;
	void *kvm_release_pfn_clean, *kvm_page_track_register_notifier;
	void *kvm_page_track_unregister_notifier, *kvm_slot_page_track_add_page;
	void *kvm_slot_page_track_remove_page;
};

/* One loaded core set, registered when its kvm_init() registers /dev/kvm. */
struct klu_core {
	struct list_head node;
	struct kobject kobj;
	char tag[KLU_TAG_MAX];
	struct miscdevice *misc;		/* the core's own kvm_dev, never registered */
	const struct file_operations *fops;	/* its /dev/kvm operations */
	struct module *vendor;			/* kvm_{intel,amd}_core_<tag>: owns the fops */
	char generic[MODULE_NAME_LEN];		/* kvm_core_<tag> */
	struct dentry *debugfs;			/* <debugfs>/kvm/<tag> */
	struct perf_guest_info_callbacks *perf_cbs;
	void (*pi_wakeup)(void);
	cpu_emergency_virt_cb *emergency;
	struct klu_core_exports exports;
};

/* One VM, vCPU or device file of a VMM, standing in for the core's file (files.c). */
enum klu_file_kind { KLU_FILE_VM, KLU_FILE_VCPU, KLU_FILE_DEVICE };

struct klu_file {
	struct list_head node;			/* klu_vm.files, in creation order */
	struct klu_vm *vm;
	enum klu_file_kind kind;
	/*
	 * The core's file.  A move replaces it with vm->lock held for writing and, for
	 * klu_file_mmap() (which runs under the mmap lock, so cannot take vm->lock),
	 * run_lock too.
	 */
	struct file *core;
	struct address_space *mapping;		/* ours, once mapped: a move zaps it */
	spinlock_t run_lock;			/* core; run_task, pending: against a move */
	/* vCPU files only */
	u32 vcpu_id;
	struct task_struct *run_task;		/* the thread in KVM_RUN on the core */
	bool exit_pending;			/* its last exit is not completed yet */
	struct file *pending;			/* an old core's vCPU that must complete it */
	struct mutex finish_lock;		/* one thread completes pending */
	void __user *pending_buf;		/* scratch of the VMM's for doing so */
	struct file *pending_vm;		/* and pending's VM file, for its dirty log */
	struct klu_dirty_slot *pending_slots;	/* its slots that logged, at the move */
	int pending_nslots;
	struct list_head journal;		/* configuration ioctls to replay */
};

/* A core file a move replaced (or half-built), closed by the mover after the resume. */
struct klu_grave {
	struct list_head node;
	struct file *file;
};

/* The most a journalled argument may take, and the move's staging area (move.c). */
#define KLU_SCRATCH_ARG		(256 << 10)
#define KLU_SCRATCH_SIZE	(KLU_SCRATCH_ARG + (64 << 10))

/*
 * One VM as kvm_thin sees it (vms.c): its files, the core that runs it, and what a move
 * needs to build it again on another core.  Lives while any of its files is open.
 *
 * Lock order (Documentation/design.rst, "Locks"): klu_move_lock, then lock (written
 * by a move only through down_write_trylock), then files_lock, then the VMM's mmap
 * lock.  A file's finish_lock nests inside lock (read), and files_lock inside it.
 * dirty_lock nests inside lock (read) and files_lock.  run_lock, record_lock and a
 * statistics file's lock are innermost spinlocks; klu_file_mmap() takes run_lock under
 * the mmap lock.
 */
struct klu_vm {
	struct kobject kobj;			/* /sys/kernel/kvm_thin/vms/<id> */
	struct list_head node;			/* klu_vms */
	unsigned long id;
	/* Read: a call into the core.  Write: a move, while it swaps the core. */
	struct rw_semaphore lock;
	struct klu_core *core;
	struct mm_struct *mm;			/* the VMM's, mmgrab()ed */
	pid_t pid;
	unsigned long type;			/* KVM_CREATE_VM's argument */
	struct mutex files_lock;		/* files, journals, nr_vcpus */
	struct list_head files;			/* the VM file first, then vCPUs, devices */
	int nr_vcpus;
	struct list_head journal;		/* VM configuration ioctls to replay */
	struct xarray slots;			/* memory slot -> its journal record */
	/* dirty.c: bits carried from an old core's dirty logs */
	struct mutex dirty_lock;
	struct xarray dirty;			/* memory slot -> struct klu_dirty */
	u64 dirty_manual;			/* KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 args[0] */
	struct list_head stats;			/* statistics files (stats.c), files_lock */
	char unmovable[128];			/* why a move would lose state, or "" */
	const void *kvm;			/* the core's struct kvm: never dereferenced */
	bool has_device;			/* a KVM device may have handed kvm out */
	bool moving;				/* vCPUs park in KVM_RUN until cleared */
	bool mover_busy;			/* a move's thread runs (move.c) */
	bool dead;				/* state lost in a move: ioctls get EIO */
	atomic_t stops;				/* vCPUs leaving the core while moving */
	wait_queue_head_t wq;
	/*
	 * What sysfs shows, under record_lock (a spinlock, innermost: nothing is taken
	 * under it), so that readers never wait for a move and a move never waits for
	 * them: the core's tag, and the last move, 0 or -errno, with its timing.
	 */
	spinlock_t record_lock;
	char core_tag[KLU_TAG_MAX];
	int move_result;
	char move_step[24];
	u64 blackout_ns, quiesce_ns, rebuild_ns, state_ns, commit_ns;
	unsigned int bypass_kept, bypass_fallback;	/* irqfds: see bypass.c */
	unsigned int pi_handed;			/* vCPUs: see pi.c */
	char move_from[KLU_TAG_MAX], move_to[KLU_TAG_MAX];
};

extern struct mutex klu_cores_lock;
extern struct list_head klu_cores;

struct klu_core *klu_core_get_active(void);
void klu_core_put(struct klu_core *core);
struct klu_core *klu_core_by_tag(const char *tag);
bool klu_tag_ok(const char *tag);
int klu_core_set_active(struct klu_core *core);
struct klu_core *klu_core_active_locked(void);

struct device *klu_thin_misc_device(void);
long klu_dev_vm_created(struct klu_core *core, unsigned long type, long r);
struct file *klu_take_fd(int fd);
int klu_give_fd(struct file *file);
struct page *klu_core_page(struct file *core, pgoff_t pgoff);
int klu_copy_page(struct file *from, struct file *to, pgoff_t pgoff);

struct klu_vm *klu_vm_new(struct klu_core *core, unsigned long type);
void klu_vm_get(struct klu_vm *vm);
void klu_vm_put(struct klu_vm *vm);
void klu_vcpu_kick(struct klu_file *kf);
__printf(3, 4) void klu_vm_refuse(struct klu_vm *vm, bool dead, const char *fmt, ...);
void klu_vm_add_file(struct klu_vm *vm, struct klu_file *kf);
void klu_vm_del_file(struct klu_vm *vm, struct klu_file *kf);
void klu_close_graves(struct list_head *dead);
void klu_close_later(struct klu_vm *vm, struct file **files, int n);
int klu_vms_for_each(int (*fn)(struct klu_vm *vm, void *data), void *data);

/* journal.c: what the VMM configured, for a move to replay. */
struct kernel_param;
extern bool klu_fault_injection;
int klu_test_knob_set(const char *val, const struct kernel_param *kp,
		      int (*set)(const char *, const struct kernel_param *), bool is_default);
struct klu_record;
struct klu_record *klu_journal_take(struct klu_file *kf, unsigned int ioctl,
				    unsigned long arg);
void klu_journal_untake(struct klu_record *rec);
void klu_journal_note(struct klu_file *kf, unsigned int ioctl, unsigned long arg,
		      struct klu_record *rec);
void klu_journal_refuse(struct klu_vm *vm, const char *why);
void klu_journal_free(struct list_head *journal);
/* What klu_journal_replay() replays. */
enum klu_replay {
	KLU_REPLAY_CONFIG,		/* everything but the irqfds */
	KLU_REPLAY_IRQFDS_ON,		/* attach the irqfds */
	KLU_REPLAY_IRQFDS_OFF,		/* detach them */
	KLU_REPLAY_GROUPS_ON,		/* add kvm-vfio's VFIO groups */
	KLU_REPLAY_GROUPS_OFF,		/* delete them */
};

int klu_journal_replay(struct list_head *journal, struct file *core, void __user *scratch,
		       size_t scratch_size, enum klu_replay what);
void klu_journal_resample_kick(struct list_head *journal);
struct klu_dirty_slot {
	u32 slot;		/* as KVM_SET_USER_MEMORY_REGION names it: as_id << 16 | id */
	u64 npages;
};
/* KVM_MEM_MAX_NR_PAGES, which is not uAPI */
#define KLU_SLOT_PAGES_MAX	((1ull << 31) - 1)
/*
 * Distinct KVM_ENABLE_CAP records one journal keeps for a move to replay: a VMM that
 * enables more than this (each call different from the last) makes its VM unmovable,
 * so that the journal's memory has a bound.  Repeats of the last call are not kept.
 */
#define KLU_CAPS_MAX		256
int klu_journal_log_slots(struct klu_vm *vm, struct klu_dirty_slot **out);

/* dirty.c: dirty-page logging across moves */
int klu_dirty_move(struct klu_vm *vm, struct file *old_vm, void __user *buf, size_t size,
		   struct klu_dirty_slot **slots);
int klu_dirty_after_exit(struct klu_file *kf);
long klu_dirty_ioctl(struct klu_vm *vm, struct file *core, unsigned int ioctl,
		     unsigned long arg, bool compat);
void klu_dirty_slot_changed(struct klu_vm *vm, u32 slot);
int klu_dirty_rebuilt(struct klu_vm *vm, struct file *new_vm, void __user *scratch);
void klu_dirty_free(struct klu_vm *vm);

/* stats.c: statistics files that follow their VM */
long klu_stats_wrap(struct klu_file *kf, struct file *filp, int fd);
void klu_stats_moved(struct klu_vm *vm, void __user *ubuf, size_t usize,
		     struct list_head *graves);

/* bypass.c: the irq-bypass consumers of the irqfds, across moves */
struct eventfd_ctx;
unsigned int klu_bypass_arm(struct klu_vm *vm, const void *kvm, bool first, bool keep,
			    unsigned int *armed);
bool klu_bypass_posting(void);
unsigned int klu_bypass_move_end(struct klu_vm *vm);
extern struct kobj_attribute klu_irqbypass_attr;
void klu_journal_irqfds(struct list_head *journal, void (*fn)(struct eventfd_ctx *, void *),
			void *data);

/* pi.c: VMX posted-interrupt descriptors, handed over by a move */
struct klu_pi_move {
	struct klu_core *from, *to;
	const struct klu_pi_ops *from_ops, *to_ops;
	unsigned int n;			/* vCPUs */
	struct file *old_vm, *new_vm;	/* the cores' VM files */
	struct file **old, **new;	/* and vCPU files, in the same order */
	struct pi_desc **spare;		/* the old vCPUs' after the handover */
	struct pi_desc **own;		/* the new vCPUs' before it */
	bool handed;
};
int klu_pi_init(void);
void klu_pi_exit(void);
bool klu_pi_wanted(void);
bool klu_pi_possible(struct klu_pi_move *pm, char *why, size_t size);
int klu_pi_hand_over(struct klu_pi_move *pm);
void klu_pi_hand_back(struct klu_pi_move *pm);
void klu_pi_move_end(struct klu_pi_move *pm);
int klu_pi_show(char *buf, int at);

/* move.c */
int klu_move_init(struct kobject *parent);
int klu_move_vcpu_state(struct klu_vm *vm, struct file *from, struct file *to,
			void __user *scratch);
extern unsigned int klu_fail_move_step;
int klu_dev_init(void);
void klu_dev_exit(void);
int klu_hooks_init(void);
/* exports.c: kvm.ko's symbols for modules outside KVM (kvmgt) */
int klu_exports_resolve(struct klu_core *core);
void klu_owner_set(const void *kvm, struct klu_core *core, const struct klu_vm *vm);
void klu_owner_del(const void *kvm, const struct klu_vm *vm);
void klu_owner_forget_core(struct klu_core *core);
bool klu_owner_held(const void *kvm);
/* unload.c: why an rmmod was refused, in the log */
void klu_unload_init(void);
void klu_unload_exit(void);
void klu_hooks_exit(void);
int klu_svm_init(void);
void klu_svm_exit(void);
int klu_vmx_init(void);
void klu_vmx_exit(void);
int klu_uret_init(void);
void klu_uret_exit(void);
int klu_sysfs_init(void);
void klu_sysfs_exit(void);
int klu_sysfs_add_core(struct klu_core *core);
int klu_vms_init(struct kobject *parent);
void klu_vms_exit(void);
void klu_vms_count(const char *tag, int *vms, int *vcpus);
void klu_sysfs_del_core(struct klu_core *core);

/* vmxon.S: VMXON on the region at physical address *@pa; 0, or -EFAULT if it faults. */
int klu_vmxon_insn(u64 *pa);
void klu_module_name(unsigned long addr, char *name, size_t len);

/*
 * The kernel interfaces kvm_core/klu_shim.h renames, as kvm_thin implements them (and
 * KLU_THIN(irq_bypass_register/unregister) in core_api.h, bypass.c).
 */
int KLU_THIN(misc_register)(struct miscdevice *misc);
void KLU_THIN(misc_deregister)(struct miscdevice *misc);
int KLU_THIN(cpuhp_setup_state)(enum cpuhp_state state, const char *name, bool invoke,
				int (*startup)(unsigned int cpu),
				int (*teardown)(unsigned int cpu), bool multi_instance);
void KLU_THIN(cpuhp_remove_state)(enum cpuhp_state state, bool invoke);
void KLU_THIN(perf_register_guest_info_callbacks)(struct perf_guest_info_callbacks *cbs);
void KLU_THIN(perf_unregister_guest_info_callbacks)(struct perf_guest_info_callbacks *cbs);
void KLU_THIN(emergency_register_virt_callback)(cpu_emergency_virt_cb *callback);
void KLU_THIN(emergency_unregister_virt_callback)(cpu_emergency_virt_cb *callback);
void KLU_THIN(intel_pt_handle_vmx)(int on);
void KLU_THIN(amd_pmu_enable_virt)(void);
void KLU_THIN(amd_pmu_disable_virt)(void);
struct dentry *KLU_THIN(debugfs_create_dir)(const char *name, struct dentry *parent);
int KLU_THIN(amd_iommu_register_ga_log_notifier)(int (*notifier)(u32 ga_tag));

#endif
