/* SPDX-License-Identifier: GPL-2.0 */
/* The flat guest image, linked into every host-side test binary. */
	.section .rodata
	.globl klu_guest_image, klu_guest_image_end
	.balign 16
klu_guest_image:
	.incbin GUEST_BIN
klu_guest_image_end:
	.section .note.GNU-stack, "", @progbits
