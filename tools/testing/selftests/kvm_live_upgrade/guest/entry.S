/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Guest entry: the host starts every vCPU here in flat 32-bit protected mode with
 * ESP already set and the vCPU's index in EDI, so all that is left is to call C with
 * the index and stop.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
	.code32
	.section .text.entry, "ax"
	.globl _start
_start:
	pushl	%edi
	call	guest_main
1:	hlt
	jmp	1b
