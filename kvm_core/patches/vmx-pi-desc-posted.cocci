// SPDX-License-Identifier: GPL-2.0
// Target: arch/x86/kvm/vmx/posted_intr.c
// Expect: return to_vmx(vcpu)->pi_desc;
// Expect: pi_test_on(vmx->pi_desc)
// The vCPU's posted-interrupt descriptor is a pointer to kvm_thin's memory
// (vmx-pi-desc-struct.cocci).
@@
expression E;
@@
- &E->pi_desc
+ E->pi_desc


@@
expression E;
@@
- &(E->pi_desc)
+ E->pi_desc
