// SPDX-License-Identifier: GPL-2.0
// Target: arch/x86/kvm/vmx/vmx.c
// Expect: vmx->pi_desc = KLU_THIN(pi_desc_alloc)();
// Expect: KLU_THIN(pi_desc_free)(vmx->pi_desc);
// Expect: __pa(vmx->pi_desc)
// The vCPU's posted-interrupt descriptor is a pointer to kvm_thin's memory
// (vmx-pi-desc-struct.cocci): allocated with the VPID, freed with it.
@@
expression E;
@@
- &E->pi_desc
+ E->pi_desc

@@
expression E;
identifier f;
@@
- E->pi_desc.f
+ E->pi_desc->f

@@
struct vcpu_vmx *vmx;
@@
  vmx->vpid = allocate_vpid();
+ vmx->pi_desc = KLU_THIN(pi_desc_alloc)();
+ if (!vmx->pi_desc)
+	goto free_vpid;

@@
struct vcpu_vmx *vmx;
@@
  free_vpid(vmx->vpid);
+ KLU_THIN(pi_desc_free)(vmx->pi_desc);
