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

/*
 * Interrupt entry for KLU_MODE_IRQ: save the registers, call the C handler with the
 * vector, and return.  The handlers send the EOI themselves.
 */
	.macro	KLU_ISR vector
	.globl	klu_isr_\vector
klu_isr_\vector:
	pushal
	cld
	pushl	$\vector
	call	guest_irq
	addl	$4, %esp
	popal
	iretl
	.endm

	KLU_ISR	0x41
	KLU_ISR	0x42
	KLU_ISR	0x50
	KLU_ISR	0xff
	.globl	klu_isr_other
klu_isr_other:
	pushal
	cld
	pushl	$0
	call	guest_irq
	addl	$4, %esp
	popal
	iretl

/* An exception: tell the host (KLU_PORT_DONE with status 0xdead) and stop. */
	.globl	klu_isr_fault
klu_isr_fault:
	movl	$0xdead, %eax
	outl	%eax, $0xe4
2:	cli
	hlt
	jmp	2b
