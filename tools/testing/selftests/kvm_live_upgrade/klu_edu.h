/* SPDX-License-Identifier: GPL-2.0 */
/*
 * QEMU's edu PCI device (1234:11e8) through VFIO, for the selftests that use it as a
 * source of MSIs and DMA: finding it, binding it to a VFIO driver, opening it the way a
 * VMM does (container, group, device; type1v2), its BAR0 registers and config space,
 * its MSI on an eventfd, DMA mappings, and the host's count of its interrupt.
 *
 * The VFIO part serves any PCI device on vfio-pci too (vm_irte -d): klu_edu_open() with
 * KLU_EDU_ANY_DEVICE, klu_edu_region(), klu_edu_irq_enable(), klu_edu_host_irq_count().
 *
 * Every error ends the calling test through the struct's fail or skip callback (the
 * caller's own TAP line), never by returning: a NULL callback is klu_fail/klu_skip.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef KLU_EDU_H
#define KLU_EDU_H

#include <stdbool.h>
#include <stdint.h>

#include "klu_edu_regs.h"
#include "klu_vm.h"

#define KLU_EDU_VENDOR		"0x1234"
#define KLU_EDU_DEVICE		"0x11e8"
#define KLU_EDU_NAME_SIZE	32	/* a PCI device name, "0000:00:03.0" */

#define PCI_CMD_OFF	4
#define PCI_CMD_MEMORY	0x2
#define PCI_CMD_MASTER	0x4

/* How a test ends: print its TAP line and exit (KSFT_FAIL, KSFT_SKIP). */
typedef void (*klu_edu_end_fn)(const char *fmt, ...);

struct klu_edu {
	char pci[KLU_EDU_NAME_SIZE];	/* klu_edu_find() */
	const char *driver;		/* the VFIO driver klu_edu_bind() binds it to */
	int container, group, device;
	uint64_t bar0, config;		/* region offsets in the device file */
	int efd;			/* MSI trigger */
	klu_edu_end_fn fail, skip;	/* NULL: klu_fail, klu_skip */
};

#define KLU_EDU_INIT(fail_fn, skip_fn) {					\
	.container = -1, .group = -1, .device = -1, .efd = -1,			\
	.fail = (fail_fn), .skip = (skip_fn),					\
}

/* klu_edu_open() flags */
#define KLU_EDU_NEED_VADDR	1	/* skip unless type1 has VFIO_UPDATE_VADDR */
#define KLU_EDU_ANY_DEVICE	2	/* not edu: no BAR0 nor identification check */

/* PCI device @pci (a name in /sys/bus/pci/devices) is an edu. */
bool klu_edu_is_edu(const char *pci);

/* The first edu device into @e->pci, or @want if it is one; a skip if there is none. */
void klu_edu_find(struct klu_edu *e, const char *want);
/*
 * Bind @e->pci to the VFIO PCI driver @driver (driver_override, unbind, drivers_probe)
 * unless it is bound to it already; its IOMMU group number.  A skip without an IOMMU
 * group or without @driver.
 */
int klu_edu_bind(struct klu_edu *e, const char *driver);
/*
 * Open the container, group @group_nr and the device, type1v2, find its regions and
 * turn on memory decoding and bus mastering: what a VMM does at start.
 */
void klu_edu_open(struct klu_edu *e, int group_nr, unsigned int flags);
/*
 * The offset of VFIO region @index in the device file; fails unless it is readable,
 * writable and at least @min_size bytes.
 */
uint64_t klu_edu_region(struct klu_edu *e, uint32_t index, uint64_t min_size);
/* The BAR0 and config region offsets; checks edu's identification register. */
void klu_edu_regions(struct klu_edu *e);
/* Close the device, group and container that are open (not the eventfd). */
void klu_edu_close(struct klu_edu *e);

uint32_t klu_edu_rd(struct klu_edu *e, uint32_t reg);
void klu_edu_wr(struct klu_edu *e, uint32_t reg, uint32_t v);
uint16_t klu_edu_cfg_rd16(struct klu_edu *e, uint32_t off);
void klu_edu_cfg_wr16(struct klu_edu *e, uint32_t off, uint16_t v);

/* The device's one MSI vector signals @efd (< 0: a new eventfd), kept in @e->efd. */
void klu_edu_msi_enable(struct klu_edu *e, int efd);
/*
 * Vector @vector of VFIO interrupt @index (VFIO_PCI_MSI_IRQ_INDEX or _MSIX_) signals
 * @efd (< 0: a new eventfd), kept in @e->efd.
 */
void klu_edu_irq_enable(struct klu_edu *e, uint32_t index, uint32_t vector, int efd);

void klu_edu_dma_map(struct klu_edu *e, void *mem, uint64_t iova, uint64_t size,
		     uint32_t flags);
void klu_edu_dma_unmap(struct klu_edu *e, uint64_t iova, uint64_t size, uint32_t flags);
/* A DMA of @len bytes from @src to @dst (@cmd: EDU_DMA_*); fails if one still runs. */
void klu_edu_dma_start(struct klu_edu *e, uint32_t src, uint32_t dst, uint32_t len,
		       uint32_t cmd);
/* Until the DMA has finished; fails, naming @what, after @timeout_ns. */
void klu_edu_dma_wait(struct klu_edu *e, uint64_t timeout_ns, const char *what);

/*
 * The host's count of @pci's MSI, the "vfio-msi[0](PCI name)" line of /proc/interrupts
 * summed over the CPUs; -1 if there is no such line.
 */
int64_t klu_edu_host_msi_count(const char *pci);
/* The same for any vector: the "vfio-msi[N](...)" or "vfio-msix[N](...)" line. */
int64_t klu_edu_host_irq_count(const char *pci, bool msix, uint32_t vector);

#endif
