/* SPDX-License-Identifier: GPL-2.0 */
/*
 * VMXON with a fault fixup: a #UD or #GP (VMX off in IA32_FEATURE_CONTROL, CR4 or CR0
 * bits not allowed) returns -EFAULT instead of oopsing, and VMfailInvalid (CF) or
 * VMfailValid (ZF), which a CPU already in VMX operation gives, -EIO.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <linux/linkage.h>
#include <linux/errno.h>
#include <asm/asm.h>

/* int klu_vmxon_insn(u64 *pa) */
SYM_FUNC_START(klu_vmxon_insn)
1:	vmxon	(%rdi)
	jbe	3f
	xorl	%eax, %eax
	RET
2:	movl	$-EFAULT, %eax
	RET
3:	movl	$-EIO, %eax
	RET
	_ASM_EXTABLE(1b, 2b)
SYM_FUNC_END(klu_vmxon_insn)
