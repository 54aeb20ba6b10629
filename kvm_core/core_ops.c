// SPDX-License-Identifier: GPL-2.0
/*
 * What kvm_thin asks of a core about one of its VMs, answered with the core's own view
 * of struct kvm (whose layout may differ between cores).  Linked into kvm_core_<tag>.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <linux/kvm_host.h>
#include <kvm_thin/core_api.h>

int klu_core_nr_vcpus(struct kvm *kvm)
{
	return atomic_read(&kvm->online_vcpus);
}
