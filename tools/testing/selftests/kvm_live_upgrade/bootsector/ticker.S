/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A 512-byte boot sector for an unmodified VMM: it prints "klu-tick NNN tsc=T" (NNN =
 * 000..039, or up to KLU_TICKS - 1, three digits; T the guest's TSC as the line began,
 * 16 hex digits) on COM1, spinning between lines, then writes 0x31 to isa-debug-exit
 * (port 0xf4), which QEMU turns into exit status (0x31 << 1) | 1 = 99.  The host checks
 * every line, and sees in the TSCs for how long the guest did not run, whatever delays
 * the printing.
 *
 * With KLU_WAIT the guest runs until the test tells it to stop: past KLU_TICKS it goes
 * on ticking until a byte arrives on COM1 (the VMM's serial input), so a test that moves
 * the VM is never outrun by a guest that ends before its moves.  It gives up after tick
 * 999 with 0x32 (exit status 101): nobody said stop.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KLU_TICKS
#define KLU_TICKS	40		/* at most 1000: three digits */
#endif
#ifndef KLU_SPIN
#define KLU_SPIN	0x200000
#endif
#define KLU_MAX_TICKS	1000		/* three digits */

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
	rdtsc
	movl	%eax, %edi		/* the TSC, for the end of the line */
	movl	%edx, %ebp
	movw	$msg, %bx
1:	movb	(%bx), %al
	testb	%al, %al
	jz	2f
	call	putc
	incw	%bx
	jmp	1b
2:	movw	%si, %ax		/* three decimal digits (putc keeps %ax) */
	movb	$100, %cl
	divb	%cl			/* %al hundreds, %ah the rest */
	call	putdigit
	movb	%ah, %al
	xorb	%ah, %ah
	movb	$10, %cl
	divb	%cl			/* %al tens, %ah units */
	call	putdigit
	movb	%ah, %al
	call	putdigit
	movw	$tsc, %bx
5:	movb	(%bx), %al
	testb	%al, %al
	jz	6f
	call	putc
	incw	%bx
	jmp	5b
6:	movl	%ebp, %eax
	call	puthex
	movl	%edi, %eax
	call	puthex
	movb	$'\n', %al
	call	putc
	movl	$KLU_SPIN, %ecx		/* spin, so the run spans some time */
3:	addr32 loop 3b
	incw	%si
	cmpw	$KLU_TICKS, %si
	jb	tick
	movb	$0x31, %al		/* done: exit status 99 */
#ifdef KLU_WAIT
	movw	$0x3fd, %dx		/* told to stop: COM1 has received a byte */
	inb	%dx, %al
	testb	$0x01, %al
	movb	$0x31, %al
	jnz	9f
	cmpw	$KLU_MAX_TICKS, %si
	jb	tick
	movb	$0x32, %al		/* never told: exit status 101 */
9:
#endif
	movw	$0xf4, %dx
	outb	%al, %dx
	hlt

putdigit:				/* %al (0..9) -> COM1 as a digit, %ax kept */
	pushw	%ax
	addb	$'0', %al
	call	putc
	popw	%ax
	ret

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

puthex:					/* eax -> COM1, 8 hex digits */
	movw	$8, %cx
7:	roll	$4, %eax
	pushl	%eax
	andb	$0xf, %al
	addb	$'0', %al
	cmpb	$'9', %al
	jbe	8f
	addb	$('a' - '9' - 1), %al
8:	call	putc
	popl	%eax
	loop	7b
	ret

msg:	.asciz	"klu-tick "
tsc:	.asciz	" tsc="

	.org	510
	.byte	0x55, 0xaa
