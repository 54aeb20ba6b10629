/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Force-included into every object of a KVM core.  Each kernel interface that has one
 * slot for all of KVM (a misc minor, a CPU hotplug state, perf's guest callbacks, the
 * posted-interrupt wake-up vector, ...) is renamed here to kvm_thin's version, which
 * multiplexes it across the loaded cores.  The kernel header that declares the
 * interface is renamed along with the call, so the prototypes stay the kernel's own.
 * No upstream file is edited for these; Documentation/upstream-changes.rst lists them.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KLU_SHIM_H
#define KLU_SHIM_H

#include <kvm_thin/abi.h>

#define misc_register				KLU_THIN(misc_register)
#define misc_deregister				KLU_THIN(misc_deregister)
#define __cpuhp_setup_state			KLU_THIN(cpuhp_setup_state)
#define __cpuhp_remove_state			KLU_THIN(cpuhp_remove_state)
#define perf_register_guest_info_callbacks	KLU_THIN(perf_register_guest_info_callbacks)
#define perf_unregister_guest_info_callbacks	KLU_THIN(perf_unregister_guest_info_callbacks)
#define cpu_emergency_register_virt_callback	KLU_THIN(emergency_register_virt_callback)
#define cpu_emergency_unregister_virt_callback	KLU_THIN(emergency_unregister_virt_callback)
#define intel_pt_handle_vmx			KLU_THIN(intel_pt_handle_vmx)
#define amd_pmu_enable_virt			KLU_THIN(amd_pmu_enable_virt)
#define amd_pmu_disable_virt			KLU_THIN(amd_pmu_disable_virt)
#define debugfs_create_dir			KLU_THIN(debugfs_create_dir)
#define amd_iommu_register_ga_log_notifier	KLU_THIN(amd_iommu_register_ga_log_notifier)

/*
 * irqbypass.ko allows one consumer per eventfd, which a live move needs for the old
 * core's irqfd and the new one's in turn: kvm_thin holds it (kvm_core/klu_bypass.c).
 */
#define irq_bypass_register_consumer		klu_core_irq_bypass_register
#define irq_bypass_unregister_consumer		klu_core_irq_bypass_unregister

/*
 * The posted-interrupt wake-up vector has one handler; kvm_thin's calls every core's.
 * A VMX core registers its handler in kvm_core/klu_vmx_pi.c, which also offers
 * kvm_thin the operations that hand a vCPU's posted-interrupt descriptor over.
 */
#define kvm_set_posted_intr_wakeup_handler	klu_core_set_pi_wakeup_handler

/* Per-CPU VMX state that kvm_thin owns (kvm_core/patches/ removes the core's copy). */
#define current_vmcs				KLU_THIN(current_vmcs)

/*
 * Helpers for the code kvm_core/patches/ puts into upstream files; those files also get
 * #include <kvm_thin/core_api.h>.
 */
#define KLU_SVM(sd)	((void)(sd), this_cpu_ptr(&KLU_THIN(svm_cpu)))
#define KLU_VMXON_INSTEAD_OF(upstream_fn, pa) \
	((void)(upstream_fn), (void)(pa), KLU_THIN(vmxon)())
#define KLU_URET_ONLINE(list, nr)					\
	do {								\
		u32 __i;						\
									\
		for (__i = 0; __i < (nr); __i++)			\
			KLU_THIN(uret_online)((list)[__i]);		\
	} while (0)

#endif
