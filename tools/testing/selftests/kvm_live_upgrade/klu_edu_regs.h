/* SPDX-License-Identifier: GPL-2.0 */
/*
 * QEMU's edu PCI device (1234:11e8, docs/specs/edu.txt): its BAR0 registers, for the
 * VMM-side tests (klu_edu.h) and the guest-side driver (modules/klu_edu_guest.c) alike.
 * Registers below 0x80 take 4-byte accesses only.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KLU_EDU_REGS_H
#define KLU_EDU_REGS_H

#define EDU_ID		0x00
#define EDU_LIVENESS	0x04		/* reads back the complement of what was written */
#define EDU_IRQ_STATUS	0x24
#define EDU_IRQ_RAISE	0x60
#define EDU_IRQ_ACK	0x64
#define EDU_DMA_SRC	0x80
#define EDU_DMA_DST	0x88
#define EDU_DMA_CNT	0x90
#define EDU_DMA_CMD	0x98
#define EDU_DMA_RUN	0x1
#define EDU_DMA_TO_RAM	0x2		/* else RAM to edu */
#define EDU_DMA_IRQ	0x4		/* an MSI when it is done */
#define EDU_STATUS_RAISE 0x1		/* what we write to EDU_IRQ_RAISE */
#define EDU_STATUS_DMA	0x100		/* what a DMA's completion sets */
#define EDU_BUF		0x40000u	/* edu's buffer, in its own address space */
#define EDU_DMA_BITS	28		/* edu masks DMA addresses to 28 bits */

#endif
