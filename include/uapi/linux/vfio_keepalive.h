/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * vfio_keepalive: an assigned PCI device keeps its DMA and interrupts while the
 * process that owns it is replaced.
 *
 * A device bound to the vfio-pci variant driver "vfio-keepalive" behaves like one
 * bound to vfio-pci.  Its owner may arm keepalive on the VFIO device file
 * (VFIO_KEEPALIVE_ARM), which gives it a token that the driver made.  From then on,
 * when the owner closes the owner file that ARM returned (or dies), the device is not
 * closed: it is not reset, bus mastering
 * stays on, its MSI/MSI-X vectors stay allocated with their eventfds connected, and its
 * IOMMU domain and DMA mappings stay in place (iommu_keepalive).  A new owner presents
 * the token to /dev/vfio-keepalive (VFIO_KEEPALIVE_RECLAIM) and gets the device, group,
 * container, interrupt eventfds and DMA memory files back as new file descriptors,
 * and the next token: each token reclaims once.
 *
 * Every structure starts with argsz (the size the caller passes) and flags.  Unknown
 * flags are refused with EINVAL.  See Documentation/vfio-keepalive.rst.
 */
#ifndef _UAPI_LINUX_VFIO_KEEPALIVE_H
#define _UAPI_LINUX_VFIO_KEEPALIVE_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define VFIO_KEEPALIVE_API_VERSION	2	/* 2: the driver makes the token */

/* ioctl type of the commands below; like VFIO's, they carry argsz instead of a size */
#define VFIO_KEEPALIVE_TYPE		0xB9

#define VFIO_KEEPALIVE_TOKEN_SIZE	16	/* a UUID */
#define VFIO_KEEPALIVE_NAME_SIZE	32	/* a PCI device name, "0000:00:03.0" */

/*
 * VFIO_KEEPALIVE_GET_INFO, on /dev/vfio-keepalive: what this module supports.
 */
struct vfio_keepalive_info {
	__u32	argsz;
	__u32	flags;			/* in: 0 */
	__u32	api_version;		/* out: VFIO_KEEPALIVE_API_VERSION */
	__u32	default_timeout_ms;	/* out: reclaim timeout when ARM passes 0 */
	__u32	max_timeout_ms;		/* out: the longest timeout ARM accepts */
	__u32	max_ranges;		/* out: the most DMA ranges ARM accepts */
	__u32	max_irqs;		/* out: the most interrupt vectors kept */
	__u32	pad;
};

#define VFIO_KEEPALIVE_GET_INFO		_IO(VFIO_KEEPALIVE_TYPE, 0)

/*
 * A DMA range of the owner's type1 container.  At ARM, iova, size and vaddr name a
 * mapping the owner made with VFIO_IOMMU_MAP_DMA; vaddr must lie in a shared mapping
 * of a memfd, shmem or hugetlbfs file.  At RECLAIM, memfd is a new descriptor of that
 * file and offset the position of iova in it: the new owner mmaps it and moves the
 * mapping to its own address space with VFIO_DMA_UNMAP_FLAG_VADDR and
 * VFIO_DMA_MAP_FLAG_VADDR, without any window in which the IOVA is unmapped.
 */
struct vfio_keepalive_range {
	__aligned_u64	iova;
	__aligned_u64	size;
	__aligned_u64	vaddr;		/* in at ARM; 0 at RECLAIM */
	__aligned_u64	offset;		/* out at RECLAIM */
	__s32		memfd;		/* out at RECLAIM */
	__u32		flags;		/* 0 */
};

/*
 * VFIO_KEEPALIVE_ARM, on the VFIO device file of a device bound to vfio-keepalive.
 *
 * The caller names its device, group and container files (device_fd: a VFIO file of
 * this device, normally the one the ioctl is made on) and the DMA ranges to keep
 * (memfd, offset and flags 0).  The device's interrupts
 * must be MSI or MSI-X, or none: INTx cannot be kept (EOPNOTSUPP).  owner_fd is a new
 * file descriptor; the device has an owner for as long as that file is open.  token is
 * zeros in (since API version 2), and out the token that reclaims the device, 16
 * bytes from the kernel's random number generator.
 * Errors: EINVAL (bad argsz, flags, a token that is not zeros, timeout, range), EBADF, EBUSY
 * (already armed), EOPNOTSUPP (INTx, or a range that is not file-backed), E2BIG.
 */
struct vfio_keepalive_arm {
	__u32	argsz;
	__u32	flags;			/* in: 0 */
	__u8	token[VFIO_KEEPALIVE_TOKEN_SIZE];	/* in: zeros; out: the token */
	__s32	device_fd;
	__s32	group_fd;
	__s32	container_fd;
	__u32	timeout_ms;		/* in: reclaim timeout; 0 for the default */
	__u32	nr_ranges;
	__u32	pad;
	__aligned_u64	ranges;		/* in: struct vfio_keepalive_range[nr_ranges] */
	__s32	owner_fd;		/* out */
	__u32	irq_index;		/* out: VFIO_PCI_MSI(X)_IRQ_INDEX, or ~0U for none */
	__u32	nr_irqs;		/* out: vectors, up to the last with an eventfd */
	__u32	pad2;
};

#define VFIO_KEEPALIVE_ARM		_IO(VFIO_KEEPALIVE_TYPE, 1)

/*
 * VFIO_KEEPALIVE_DISARM, on the VFIO device file: the device goes back to plain
 * vfio-pci behaviour; closing it then resets it as usual.
 */
struct vfio_keepalive_disarm {
	__u32	argsz;
	__u32	flags;			/* in: 0 */
};

#define VFIO_KEEPALIVE_DISARM		_IO(VFIO_KEEPALIVE_TYPE, 2)

/*
 * VFIO_KEEPALIVE_RECLAIM, on /dev/vfio-keepalive: take over a device that has no
 * owner.  The caller needs CAP_SYS_ADMIN, or read and write permission on the
 * device's /dev/vfio/<group> node.  On input nr_irqs and nr_ranges say how many
 * entries irq_fds/irq_counts and ranges have room for; on output, how many were
 * filled (on ENOSPC: how many are needed, and nothing was installed).
 * Unless VFIO_KEEPALIVE_RECLAIM_DISARM is set, the device stays armed, owner_fd is the
 * new owner's, and token out is the next token: the one presented no longer reclaims
 * (with RECLAIM_DISARM token is zeros out).  On an error token is left as it was.
 * Errors: ENOENT (no device of that name is bound to vfio-keepalive; or, to a caller
 * with CAP_SYS_ADMIN, it is not armed), EPERM (neither CAP_SYS_ADMIN nor access to the
 * device's group; a device that is not armed, without CAP_SYS_ADMIN), EACCES (wrong
 * token), EBUSY (it still has an owner), ENOSPC, EMFILE.
 */
struct vfio_keepalive_reclaim {
	__u32	argsz;
	__u32	flags;
#define VFIO_KEEPALIVE_RECLAIM_DISARM	(1 << 0)
	__u8	token[VFIO_KEEPALIVE_TOKEN_SIZE];	/* in: the token; out: the next */
	char	device[VFIO_KEEPALIVE_NAME_SIZE];	/* in: the PCI device name */
	__s32	device_fd;		/* out */
	__s32	group_fd;		/* out */
	__s32	container_fd;		/* out */
	__s32	owner_fd;		/* out: -1 with VFIO_KEEPALIVE_RECLAIM_DISARM */
	__u32	irq_index;		/* out: as in ARM */
	__u32	nr_irqs;		/* in: room; out: vectors */
	__u32	nr_ranges;		/* in: room; out: ranges */
	__u32	pad;
	__aligned_u64	irq_fds;	/* out: __s32[nr_irqs]: vector i's eventfd, or -1 */
	__aligned_u64	irq_counts;	/* out: __u64[nr_irqs]: its signals while ownerless */
	__aligned_u64	ranges;		/* out: struct vfio_keepalive_range[nr_ranges] */
	__aligned_u64	ownerless_ns;	/* out: how long the device had no owner */
};

#define VFIO_KEEPALIVE_RECLAIM		_IO(VFIO_KEEPALIVE_TYPE, 3)

#endif /* _UAPI_LINUX_VFIO_KEEPALIVE_H */
