/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kvm_thin core ABI number, and the names of kvm_thin's interfaces for the cores.
 * Every name carries the ABI number, so a core built for another kvm_thin ABI fails to
 * load with "Unknown symbol klu_thin<N>_..." instead of misbehaving.  No includes: this
 * is force-included into every core object, before any kernel header.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KVM_THIN_ABI_H
#define KVM_THIN_ABI_H

#ifndef KLU_THIN_ABI		/* a test module may claim another ABI */
#define KLU_THIN_ABI		4
#endif
#define __KLU_THIN(abi, name)	klu_thin##abi##_##name
#define _KLU_THIN(abi, name)	__KLU_THIN(abi, name)
#define KLU_THIN(name)		_KLU_THIN(KLU_THIN_ABI, name)

#endif
