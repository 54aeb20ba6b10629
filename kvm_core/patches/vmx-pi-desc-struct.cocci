// SPDX-License-Identifier: GPL-2.0
// Target: arch/x86/kvm/vmx/vmx.h
// Expect: *pi_desc;/* kvm_thin's */
// A vCPU's posted-interrupt descriptor is kvm_thin's memory, which the vCPU points to,
// so that a live move can hand it to the new core's vCPU at the same physical address:
// a posted IRTE of an assigned device holds that address.  vmx-pi-desc.cocci and
// vmx-pi-desc-posted.cocci follow the member's uses.  See
// Documentation/upstream-changes.rst and "The posted-interrupt descriptor" in
// Documentation/design.rst.
@@
@@
struct vcpu_vmx {
...
- struct pi_desc pi_desc;
+ struct pi_desc *pi_desc; /* kvm_thin's */
...
};
