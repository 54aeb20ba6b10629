// SPDX-License-Identifier: GPL-2.0
// Target: virt/kvm/kvm_main.c
// Expect: #include <kvm_thin/core_api.h>
// Expect: KLU_THIN(vm_created)
// Expect: KLU_THIN(vm_destroyed)
// kvm_thin keeps a registry of every VM on every core (sysfs: which core, which
// process, how many vCPUs; later, the VMs a live move takes).  A VM joins it where
// KVM announces it to user space (the create uevent, once the VM is complete) and
// leaves it where KVM announces its destruction.  See Documentation/upstream-changes.rst.

@@
expression K;
@@
+ KLU_THIN(vm_created)(K, KLU_CORE_TAG, klu_core_nr_vcpus);
  kvm_uevent_notify_change(KVM_EVENT_CREATE_VM, K);

@@
expression K;
@@
+ KLU_THIN(vm_destroyed)(K);
  kvm_uevent_notify_change(KVM_EVENT_DESTROY_VM, K);

@@
@@
 #include <linux/kvm_host.h>
+#include <kvm_thin/core_api.h>
