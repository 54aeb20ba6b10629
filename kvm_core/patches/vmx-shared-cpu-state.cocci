// SPDX-License-Identifier: GPL-2.0
// Target: arch/x86/kvm/vmx/vmx.c
// Expect: #include <kvm_thin/core_api.h>
// Expect: KLU_VMXON_INSTEAD_OF
// Expect: KLU_THIN(vmxoff)
// Expect: KLU_THIN(allocate_vpid)
// Expect: KLU_THIN(free_vpid)
// VMX state that every core on a CPU must share lives in kvm_thin: VMX operation
// (VMXON is counted and done on kvm_thin's region), the current VMCS and the VPID
// allocator.  The current-VMCS per-CPU variable is renamed to kvm_thin's by
// kvm_core/klu_shim.h; here its definition goes.  See Documentation/upstream-changes.rst.

// CR4.VMXE may already be set by another core: that is not "busy" any more.
@@
@@
- if (cr4_read_shadow() & X86_CR4_VMXE)
-	return -EBUSY;

// kvm_cpu_vmxon() stays, unused: it holds an asm goto that spatch cannot parse, so
// the replacement keeps naming it rather than deleting it.
@@
expression E;
@@
- kvm_cpu_vmxon(E)
+ KLU_VMXON_INSTEAD_OF(kvm_cpu_vmxon, E)

@@
@@
- cpu_vmxoff()
+ KLU_THIN(vmxoff)()

@@
declarer name DEFINE_PER_CPU;
@@
- DEFINE_PER_CPU(struct vmcs *, current_vmcs);

@@
@@
int allocate_vpid(void)
{
- ...
+ return enable_vpid ? KLU_THIN(allocate_vpid)() : 0;
}

@@
identifier vpid;
@@
void free_vpid(int vpid)
{
- ...
+ if (enable_vpid)
+	KLU_THIN(free_vpid)(vpid);
}

@@
declarer name DEFINE_SPINLOCK;
@@
- static DEFINE_SPINLOCK(vmx_vpid_lock);

@@
@@
 #include <linux/kvm_host.h>
+#include <kvm_thin/core_api.h>
