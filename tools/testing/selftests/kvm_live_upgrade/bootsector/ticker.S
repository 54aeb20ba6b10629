/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A 512-byte boot sector for an unmodified VMM: it prints "klu-tick N" (N = 0..39, or
 * up to KLU_TICKS - 1) on COM1, spinning between lines, then writes 0x31 to isa-debug-exit (port 0xf4), which
 * QEMU turns into exit status (0x31 << 1) | 1 = 99.  The host checks every line.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KLU_TICKS
#define KLU_TICKS	40		/* at most 100: two digits */
#endif
#ifndef KLU_SPIN
#define KLU_SPIN	0x200000
#endif

	.code16
	.section .text
	.globl _start
_start:
	cli
	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %ss
	movw	$0x7c00, %sp
	xorw	%si, %si		/* tick counter */
tick:
	movw	$msg, %bx
1:	movb	(%bx), %al
	testb	%al, %al
	jz	2f
	call	putc
	incw	%bx
	jmp	1b
2:	movw	%si, %ax		/* two decimal digits */
	movb	$10, %cl
	divb	%cl
	pushw	%ax
	addb	$'0', %al
	call	putc
	popw	%ax
	movb	%ah, %al
	addb	$'0', %al
	call	putc
	movb	$'\n', %al
	call	putc
	movl	$KLU_SPIN, %ecx		/* spin, so the run spans some time */
3:	addr32 loop 3b
	incw	%si
	cmpw	$KLU_TICKS, %si
	jb	tick
	movw	$0xf4, %dx
	movb	$0x31, %al
	outb	%al, %dx
	hlt

putc:					/* al -> COM1, waiting for THR empty */
	pushw	%dx
	pushw	%ax
	movw	$0x3fd, %dx
4:	inb	%dx, %al
	testb	$0x20, %al
	jz	4b
	popw	%ax
	movw	$0x3f8, %dx
	outb	%al, %dx
	popw	%dx
	ret

msg:	.asciz	"klu-tick "

	.org	510
	.byte	0x55, 0xaa
