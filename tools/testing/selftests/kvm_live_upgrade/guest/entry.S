/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Guest entry: the host starts every vCPU here in flat 32-bit protected mode with
 * ESP already set, so all that is left is to call C and stop.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
	.code32
	.section .text.entry, "ax"
	.globl _start
_start:
	call	guest_main
1:	hlt
	jmp	1b
