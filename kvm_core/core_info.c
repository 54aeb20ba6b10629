// SPDX-License-Identifier: GPL-2.0
/*
 * Identity of a KVM core module: which core set it belongs to and which upstream KVM
 * it was built from.  Linked into kvm_core_<tag>.ko, kvm_intel_core_<tag>.ko and
 * kvm_amd_core_<tag>.ko, so that modinfo, /sys/module/<core>/version, the test beds
 * and kvm_thin can tell cores apart without trusting file names.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <linux/module.h>

MODULE_VERSION(KLU_KVM_VERSION);
MODULE_INFO(klu_core_tag, KLU_CORE_TAG);
