// SPDX-License-Identifier: GPL-2.0
/*
 * klu_irte: the VT-d interrupt remapping table entry (IRTE) behind an assigned device's
 * MSI, for the vm_irte selftest, which compares it before and after live moves of the
 * VM the interrupt goes to: a move must leave it as it was, byte for byte.
 *
 * It only reads.  The device's message comes from the device itself (the MSI capability
 * in config space, or the MSI-X table entry through a mapping of the BAR that holds it);
 * the remapping units are those of the ACPI DMAR table, whose registers say where each
 * unit's table is (IRTA); the entry is read from that table, which is ordinary kernel
 * memory.  Nothing of the device, the units or the table is written.
 *
 * Interface: /dev/klu_irte, mode 0600 (and CAP_SYS_ADMIN), one ioctl, KLU_IRTE_READ,
 * with struct klu_irte_read (../klu_irte.h, which the test includes too): in, the PCI
 * device and which of its messages; out, the message, the entry's index, its 16 bytes
 * as read, and the unit (register base, IRTA).  The message must be in remappable
 * format (VT-d spec 5.1.2.2); its handle (and subhandle) is the index.  Of the units
 * of the device's PCI segment with interrupt remapping on, the one whose entry at that
 * index is present and verifies the device's requester id is chosen, or else the only
 * one with a present entry there.  Every refusal has its kernel log line.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/acpi.h>
#include <linux/bitfield.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/io.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/uaccess.h>

#include "../klu_irte.h"

/* A remapping unit's registers (VT-d spec, chapter 11) */
#define KLU_DMAR_REG_SIZE	0x1000
#define KLU_DMAR_ECAP		0x10
#define KLU_ECAP_IR		BIT_ULL(3)		/* interrupt remapping supported */
#define KLU_DMAR_GSTS		0x1c
#define KLU_GSTS_IRES		BIT(25)			/* interrupt remapping enabled */
#define KLU_DMAR_IRTA		0xb8
#define KLU_IRTA_ADDR		GENMASK_ULL(63, 12)	/* the table's physical address */
#define KLU_IRTA_S		GENMASK_ULL(3, 0)	/* 2^(S + 1) entries */

/* An MSI address and data in remappable format */
#define KLU_MSI_ADDR_FEE	GENMASK(31, 20)		/* 0xfee */
#define KLU_MSI_ADDR_HANDLE	GENMASK(19, 5)		/* handle[14:0] */
#define KLU_MSI_ADDR_REMAP	BIT(4)			/* the format: remappable */
#define KLU_MSI_ADDR_SHV	BIT(3)			/* a subhandle is in the data */
#define KLU_MSI_ADDR_HANDLE15	BIT(2)			/* handle[15] */
#define KLU_MSI_DATA_SUBHANDLE	GENMASK(15, 0)

/* The entry: what the choice of a unit looks at */
#define KLU_IRTE_SIZE		16
#define KLU_IRTE_PRESENT	BIT_ULL(0)		/* of bits 63:0 */
#define KLU_IRTE_SID		GENMASK_ULL(15, 0)	/* of bits 127:64: source id */
#define KLU_IRTE_SVT		GENMASK_ULL(19, 18)	/* and how it is verified */
#define KLU_IRTE_TRIES		8

/* One unit's entry at the index */
struct klu_irte_unit {
	u64 base;
	u64 irta;
	u64 irte[2];
	u32 reads;
};

/* The message of the device's MSI capability. */
static int klu_irte_msi(struct pci_dev *pdev, struct klu_irte_read *r)
{
	int cap = pdev->msi_cap, err;
	u16 ctrl, data;

	if (!cap) {
		pr_info("%s: no MSI capability\n", pci_name(pdev));
		return -EINVAL;
	}
	err = pci_read_config_word(pdev, cap + PCI_MSI_FLAGS, &ctrl);
	if (!err && !(ctrl & PCI_MSI_FLAGS_ENABLE)) {
		pr_info("%s: MSI not enabled\n", pci_name(pdev));
		return -ENODATA;
	}
	if (!err)
		err = pci_read_config_dword(pdev, cap + PCI_MSI_ADDRESS_LO, &r->msi_addr_lo);
	if (!err && (ctrl & PCI_MSI_FLAGS_64BIT)) {
		err = pci_read_config_dword(pdev, cap + PCI_MSI_ADDRESS_HI, &r->msi_addr_hi);
		if (!err)
			err = pci_read_config_word(pdev, cap + PCI_MSI_DATA_64, &data);
	} else if (!err) {
		err = pci_read_config_word(pdev, cap + PCI_MSI_DATA_32, &data);
	}
	if (err) {
		pr_info("%s: config space read failed: %d\n", pci_name(pdev), err);
		return -EIO;
	}
	r->msi_data = data;
	return 0;
}

/* The message of MSI-X table entry @r->msix_entry, read from the BAR that holds it. */
static int klu_irte_msix(struct pci_dev *pdev, struct klu_irte_read *r)
{
	int cap = pdev->msix_cap, err;
	void __iomem *entry;
	u32 table, off;
	u16 ctrl, cmd;

	if (!cap) {
		pr_info("%s: no MSI-X capability\n", pci_name(pdev));
		return -EINVAL;
	}
	err = pci_read_config_word(pdev, cap + PCI_MSIX_FLAGS, &ctrl);
	if (!err)
		err = pci_read_config_word(pdev, PCI_COMMAND, &cmd);
	if (!err)
		err = pci_read_config_dword(pdev, cap + PCI_MSIX_TABLE, &table);
	if (err) {
		pr_info("%s: config space read failed: %d\n", pci_name(pdev), err);
		return -EIO;
	}
	if (!(ctrl & PCI_MSIX_FLAGS_ENABLE)) {
		pr_info("%s: MSI-X not enabled\n", pci_name(pdev));
		return -ENODATA;
	}
	if (r->msix_entry > (ctrl & PCI_MSIX_FLAGS_QSIZE)) {
		pr_info("%s: MSI-X entry %u beyond its table of %u\n", pci_name(pdev),
			r->msix_entry, (ctrl & PCI_MSIX_FLAGS_QSIZE) + 1);
		return -EINVAL;
	}
	if (!(cmd & PCI_COMMAND_MEMORY)) {
		pr_info("%s: memory decoding is off, the MSI-X table cannot be read\n",
			pci_name(pdev));
		return -EIO;
	}
	off = (table & PCI_MSIX_TABLE_OFFSET) + r->msix_entry * PCI_MSIX_ENTRY_SIZE;
	entry = pci_iomap_range(pdev, table & PCI_MSIX_TABLE_BIR, off, PCI_MSIX_ENTRY_SIZE);
	if (!entry) {
		pr_info("%s: cannot map MSI-X entry %u (BAR %u, offset 0x%x)\n",
			pci_name(pdev), r->msix_entry, table & PCI_MSIX_TABLE_BIR, off);
		return -EIO;
	}
	r->msi_addr_lo = readl(entry + PCI_MSIX_ENTRY_LOWER_ADDR);
	r->msi_addr_hi = readl(entry + PCI_MSIX_ENTRY_UPPER_ADDR);
	r->msi_data = readl(entry + PCI_MSIX_ENTRY_DATA);
	pci_iounmap(pdev, entry);
	return 0;
}

/* The index of the entry the message names, if it is in remappable format. */
static int klu_irte_index(struct pci_dev *pdev, struct klu_irte_read *r)
{
	u32 lo = r->msi_addr_lo;

	if (FIELD_GET(KLU_MSI_ADDR_FEE, lo) != 0xfee || !(lo & KLU_MSI_ADDR_REMAP)) {
		pr_info("%s: MSI address 0x%08x data 0x%08x not in remappable format: interrupt remapping off?\n",
			pci_name(pdev), lo, r->msi_data);
		return -EOPNOTSUPP;
	}
	r->index = FIELD_GET(KLU_MSI_ADDR_HANDLE, lo);
	if (lo & KLU_MSI_ADDR_HANDLE15)
		r->index |= BIT(15);
	if (lo & KLU_MSI_ADDR_SHV)
		r->index += FIELD_GET(KLU_MSI_DATA_SUBHANDLE, r->msi_data);
	return 0;
}

/*
 * The entry at @index of the unit at @base into @u: 1 if it is present, 0 if it is not
 * (or the unit remaps no interrupts, or its table is smaller), or an error.  The kernel
 * may rewrite an entry while it is read (in two halves): read until two reads agree.
 */
static int klu_irte_unit_read(u64 base, u32 index, struct klu_irte_unit *u)
{
	u64 ecap, lo, hi, prev_lo = 0, prev_hi = 0, *entry;
	void __iomem *regs;
	u32 gsts, n;

	regs = ioremap(base, KLU_DMAR_REG_SIZE);
	if (!regs) {
		pr_info("unit at %#llx: cannot map its registers\n", base);
		return -ENOMEM;
	}
	ecap = readq(regs + KLU_DMAR_ECAP);
	gsts = readl(regs + KLU_DMAR_GSTS);
	u->irta = readq(regs + KLU_DMAR_IRTA);
	iounmap(regs);
	u->base = base;
	if (!(ecap & KLU_ECAP_IR) || !(gsts & KLU_GSTS_IRES)) {
		pr_info("unit at %#llx: interrupt remapping %s\n", base,
			ecap & KLU_ECAP_IR ? "not enabled" : "not supported");
		return 0;
	}
	n = 2u << FIELD_GET(KLU_IRTA_S, u->irta);
	if (index >= n) {
		pr_info("unit at %#llx: index %u beyond its table of %u entries\n", base, index,
			n);
		return 0;
	}
	entry = memremap((u->irta & KLU_IRTA_ADDR) + (u64)index * KLU_IRTE_SIZE,
			 KLU_IRTE_SIZE, MEMREMAP_WB);
	if (!entry) {
		pr_info("unit at %#llx: cannot map entry %u of its table at %#llx\n", base,
			index, u->irta & KLU_IRTA_ADDR);
		return -ENOMEM;
	}
	for (n = 1; n <= KLU_IRTE_TRIES; n++) {
		lo = READ_ONCE(entry[0]);
		hi = READ_ONCE(entry[1]);
		if (n > 1 && lo == prev_lo && hi == prev_hi)
			break;
		prev_lo = lo;
		prev_hi = hi;
	}
	memunmap(entry);
	if (n > KLU_IRTE_TRIES) {
		pr_info("unit at %#llx: entry %u changed in each of %u reads\n", base, index,
			KLU_IRTE_TRIES);
		return -EAGAIN;
	}
	u->irte[0] = lo;
	u->irte[1] = hi;
	u->reads = n;
	return !!(lo & KLU_IRTE_PRESENT);
}

/* Of the DMAR table's units of @pdev's segment, the one whose entry @r->index is its. */
static int klu_irte_find(struct pci_dev *pdev, struct klu_irte_read *r)
{
	struct klu_irte_unit cur, only = {}, *found = NULL;
	unsigned int units = 0, present = 0;
	struct acpi_dmar_hardware_unit *hw;
	struct acpi_table_header *hdr;
	struct acpi_dmar_header *s;
	void *end;
	acpi_status st;
	int ret = 0;

	st = acpi_get_table(ACPI_SIG_DMAR, 0, &hdr);
	if (ACPI_FAILURE(st)) {
		pr_info("no DMAR table (%s): no VT-d here?\n", acpi_format_exception(st));
		return -ENOENT;
	}
	end = (void *)hdr + hdr->length;
	for (s = (void *)hdr + sizeof(struct acpi_table_dmar);
	     (void *)(s + 1) <= end && s->length >= sizeof(*s) && (void *)s + s->length <= end;
	     s = (void *)s + s->length) {
		hw = (struct acpi_dmar_hardware_unit *)s;
		if (s->type != ACPI_DMAR_TYPE_HARDWARE_UNIT || s->length < sizeof(*hw) ||
		    hw->segment != r->domain)
			continue;
		units++;
		ret = klu_irte_unit_read(hw->address, r->index, &cur);
		if (ret < 0)
			break;
		if (!ret)
			continue;
		present++;
		if (FIELD_GET(KLU_IRTE_SVT, cur.irte[1]) &&
		    FIELD_GET(KLU_IRTE_SID, cur.irte[1]) == pci_dev_id(pdev)) {
			r->match = KLU_IRTE_MATCH_SID;
			found = &cur;
			break;
		}
		only = cur;
	}
	acpi_put_table(hdr);
	if (ret < 0)
		return ret;
	if (!found && present == 1) {
		r->match = KLU_IRTE_MATCH_ONLY;
		found = &only;
	}
	if (!found && present) {
		pr_info("%s: %u units have a present IRTE for index %u, none verifies the device's requester id\n",
			pci_name(pdev), present, r->index);
		return -ENOTUNIQ;
	}
	if (!found) {
		pr_info("%s: no unit has a present IRTE for index %u (%u units of segment %u in the DMAR table)\n",
			pci_name(pdev), r->index, units, r->domain);
		return -ENXIO;
	}
	r->irte[0] = found->irte[0];
	r->irte[1] = found->irte[1];
	r->dmar_base = found->base;
	r->irta = found->irta;
	r->reads = found->reads;
	return 0;
}

static long klu_irte_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct klu_irte_read __user *uarg = (void __user *)arg;
	struct klu_irte_read in, r = {};
	struct pci_dev *pdev;
	int ret;

	if (cmd != KLU_IRTE_READ)
		return -ENOTTY;
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (copy_from_user(&in, uarg, sizeof(in)))
		return -EFAULT;
	if (in.argsz < sizeof(in) || (in.flags & ~KLU_IRTE_FLAGS)) {
		pr_info("argsz %u (want %zu or more) or flags 0x%x (known 0x%x)\n", in.argsz,
			sizeof(in), in.flags, KLU_IRTE_FLAGS);
		return -EINVAL;
	}
	/* What came in; the rest is filled in below. */
	r.argsz = in.argsz;
	r.flags = in.flags;
	r.domain = in.domain;
	r.bus = in.bus;
	r.devfn = in.devfn;
	r.msix_entry = in.msix_entry;
	pdev = pci_get_domain_bus_and_slot(r.domain, r.bus, r.devfn);
	if (!pdev) {
		pr_info("%04x:%02x:%02x.%u: no such PCI device\n", r.domain, r.bus,
			PCI_SLOT(r.devfn), PCI_FUNC(r.devfn));
		return -ENODEV;
	}
	ret = r.flags & KLU_IRTE_MSIX ? klu_irte_msix(pdev, &r) : klu_irte_msi(pdev, &r);
	if (!ret)
		ret = klu_irte_index(pdev, &r);
	if (!ret)
		ret = klu_irte_find(pdev, &r);
	pci_dev_put(pdev);
	/* With EOPNOTSUPP too: the test names the message that is not remappable. */
	if ((!ret || ret == -EOPNOTSUPP) && copy_to_user(uarg, &r, sizeof(r)))
		return -EFAULT;
	return ret;
}

static const struct file_operations klu_irte_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = klu_irte_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice klu_irte_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "klu_irte",
	.fops = &klu_irte_fops,
	.mode = 0600,
};

module_misc_device(klu_irte_dev);
MODULE_DESCRIPTION("Reads the VT-d IRTE behind a PCI device's MSI, for the kvm_live_upgrade selftests");
MODULE_LICENSE("GPL");
