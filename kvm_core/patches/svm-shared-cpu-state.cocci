// SPDX-License-Identifier: GPL-2.0
// Target: arch/x86/kvm/svm/svm.c
// Expect: #include <kvm_thin/core_api.h>
// Expect: KLU_THIN(svm_get)
// Expect: KLU_THIN(svm_put)
// Expect: KLU_THIN(svm_hsave_page)
// Expect: KLU_SVM(sd)->next_asid
// Expect: KLU_THIN(svm_cpu).current_tsc_ratio
// SVM per-CPU state that every core on a CPU must share lives in kvm_thin: the ASID
// allocator, the last VMCB run (for IBPB), the TSC ratio cache, the host save area and
// the EFER.SVME count.  See Documentation/upstream-changes.rst.

// EFER.SVME may already be set by another core: that is not "busy" any more.  Whether
// another hypervisor holds it is kvm_thin's question, asked where SVM is turned on.
@@
expression efer;
@@
- if (efer & EFER_SVME)
-	return -EBUSY;

@@
expression efer;
@@
- wrmsrl(MSR_EFER, efer | EFER_SVME);
+ if (KLU_THIN(svm_get)())
+	return -EBUSY;

@@
@@
- cpu_svm_disable();
+ KLU_THIN(svm_put)();

// The host save area is kvm_thin's page, which outlives the core.
@@
identifier cpu;
expression E;
struct svm_cpu_data *sd;
@@
svm_cpu_init(int cpu)
{
<...
- sd->save_area = alloc_page(E);
+ sd->save_area = KLU_THIN(svm_hsave_page)(cpu);
...>
}

@@
struct svm_cpu_data *sd;
@@
- __free_page(sd->save_area);

@@
struct svm_cpu_data *sd;
@@
(
- sd->asid_generation
+ KLU_SVM(sd)->asid_generation
|
- sd->max_asid
+ KLU_SVM(sd)->max_asid
|
- sd->next_asid
+ KLU_SVM(sd)->next_asid
|
- sd->min_asid
+ KLU_SVM(sd)->min_asid
|
- sd->current_vmcb
+ KLU_SVM(sd)->current_vmcb
)

@@
expression E;
@@
- per_cpu_ptr(&svm_data.current_vmcb, E)
+ &per_cpu_ptr(&KLU_THIN(svm_cpu), E)->current_vmcb

@@
@@
- __this_cpu_read(current_tsc_ratio)
+ __this_cpu_read(KLU_THIN(svm_cpu).current_tsc_ratio)

@@
expression E;
@@
- __this_cpu_write(current_tsc_ratio, E)
+ __this_cpu_write(KLU_THIN(svm_cpu).current_tsc_ratio, E)

@@
declarer name DEFINE_PER_CPU;
@@
- DEFINE_PER_CPU(u64, current_tsc_ratio);

@@
@@
 #include <linux/kvm_host.h>
+#include <kvm_thin/core_api.h>
