/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The interface of the klu_irte test module (modules/klu_irte.c), shared by the module
 * and the vm_irte selftest: one ioctl on /dev/klu_irte that reads the VT-d interrupt
 * remapping table entry (IRTE) an assigned device's MSI points at.  uAPI style, so both
 * sides include it as it is.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KLU_IRTE_H
#define KLU_IRTE_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* klu_irte_read.flags, in */
#define KLU_IRTE_MSIX		0x1u	/* @msix_entry names an MSI-X entry; else MSI */
#define KLU_IRTE_FLAGS		KLU_IRTE_MSIX	/* all the flags there are */

/* klu_irte_read.match, out: how the unit holding the entry was told apart */
#define KLU_IRTE_MATCH_SID	1	/* the entry verifies the device's requester id */
#define KLU_IRTE_MATCH_ONLY	2	/* the only unit with a present entry there */

struct klu_irte_read {
	__u32 argsz;		/* in: sizeof(struct klu_irte_read) */
	__u32 flags;		/* in: KLU_IRTE_* */
	__u32 domain;		/* in: the device's PCI domain (segment) */
	__u8 bus;		/* in: its bus */
	__u8 devfn;		/* in: its device and function */
	__u16 msix_entry;	/* in: with KLU_IRTE_MSIX, the MSI-X table entry */
	/* out: the message the device holds, as read from it */
	__u32 msi_addr_lo;
	__u32 msi_addr_hi;
	__u32 msi_data;
	__u32 index;		/* the IRTE it names: handle, plus subhandle if SHV */
	__u64 irte[2];		/* the entry: bits 63:0, bits 127:64 */
	__u64 dmar_base;	/* register base of the remapping unit whose table holds it */
	__u64 irta;		/* that unit's IRTA register */
	__u32 reads;		/* reads of the entry until two in a row agreed */
	__u32 match;		/* KLU_IRTE_MATCH_* */
};

/*
 * Errors: EINVAL (argsz, flags, no MSI/MSI-X capability, entry beyond the table),
 * ENODEV (no such PCI device), ENODATA (MSI or MSI-X not enabled), EIO (memory decoding
 * off: the MSI-X table cannot be read), EOPNOTSUPP (the message is not in remappable
 * format: interrupt remapping off), ENOENT (no ACPI DMAR table), ENXIO (no unit has a
 * present entry at the index), ENOTUNIQ (several have one, none verifying the device),
 * EAGAIN (the entry kept changing while read), EPERM (no CAP_SYS_ADMIN).  The kernel log
 * says why.
 */
#define KLU_IRTE_READ		_IOWR(0xbc, 1, struct klu_irte_read)

#endif
