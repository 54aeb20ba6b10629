// SPDX-License-Identifier: GPL-2.0
// Target: arch/x86/kvm/x86.c
// Expect: #include <kvm_thin/core_api.h>
// Expect: KLU_URET_ONLINE
// Expect: KLU_THIN(uret_set)
// User-return MSRs: the per-CPU cache of what each MSR holds, and the notifier that puts
// the host value back, are kvm_thin's, shared by every core and keyed by MSR index.
// Each core keeps its own list of which MSRs it uses.  See
// Documentation/upstream-changes.rst.

@@
@@
static void kvm_user_return_msr_cpu_online(void)
{
- ...
+ KLU_URET_ONLINE(kvm_uret_msrs_list, kvm_nr_uret_msrs);
}

@@
type T1, T2, T3;
identifier slot, value, mask;
@@
int kvm_set_user_return_msr(T1 slot, T2 value, T3 mask)
{
- ...
+ return KLU_THIN(uret_set)(kvm_uret_msrs_list[slot], value, mask);
}

// kvm_thin restores host values on return to user space and when it unloads.
@@
@@
static void drop_user_return_notifiers(void)
{
- ...
}

@@
identifier urn;
@@
- static void kvm_on_user_return(struct user_return_notifier *urn) { ... }

@@
@@
 #include <linux/kvm_host.h>
+#include <kvm_thin/core_api.h>
