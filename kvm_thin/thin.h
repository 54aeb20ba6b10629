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
#include <asm/reboot.h>
#include <kvm_thin/core_api.h>

#define KLU_TAG_MAX	16

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
};

extern struct mutex klu_cores_lock;
extern struct list_head klu_cores;

struct klu_core *klu_core_get_active(void);
void klu_core_put(struct klu_core *core);
struct klu_core *klu_core_by_tag(const char *tag);
int klu_core_set_active(struct klu_core *core);
struct klu_core *klu_core_active_locked(void);

struct device *klu_thin_misc_device(void);
int klu_dev_init(void);
void klu_dev_exit(void);
int klu_hooks_init(void);
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

/* The kernel interfaces kvm_core/klu_shim.h renames, as kvm_thin implements them. */
int KLU_THIN(misc_register)(struct miscdevice *misc);
void KLU_THIN(misc_deregister)(struct miscdevice *misc);
int KLU_THIN(cpuhp_setup_state)(enum cpuhp_state state, const char *name, bool invoke,
				int (*startup)(unsigned int cpu),
				int (*teardown)(unsigned int cpu), bool multi_instance);
void KLU_THIN(cpuhp_remove_state)(enum cpuhp_state state, bool invoke);
void KLU_THIN(perf_register_guest_info_callbacks)(struct perf_guest_info_callbacks *cbs);
void KLU_THIN(perf_unregister_guest_info_callbacks)(struct perf_guest_info_callbacks *cbs);
void KLU_THIN(set_posted_intr_wakeup_handler)(void (*handler)(void));
void KLU_THIN(emergency_register_virt_callback)(cpu_emergency_virt_cb *callback);
void KLU_THIN(emergency_unregister_virt_callback)(cpu_emergency_virt_cb *callback);
void KLU_THIN(intel_pt_handle_vmx)(int on);
void KLU_THIN(amd_pmu_enable_virt)(void);
void KLU_THIN(amd_pmu_disable_virt)(void);
struct dentry *KLU_THIN(debugfs_create_dir)(const char *name, struct dentry *parent);

#endif
