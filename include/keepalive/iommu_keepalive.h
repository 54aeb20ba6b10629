/* SPDX-License-Identifier: GPL-2.0 */
/*
 * iommu_keepalive: the DMA context of a VFIO type1 container, kept while the process
 * that owns it is replaced.  The interface vfio_keepalive uses; see
 * Documentation/vfio-keepalive.rst.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#ifndef _KEEPALIVE_IOMMU_KEEPALIVE_H
#define _KEEPALIVE_IOMMU_KEEPALIVE_H

#include <linux/types.h>
#include <linux/vfio_keepalive.h>

struct file;
struct vfio_device;
struct ioka_ctx;

#define IOKA_MAX_RANGES	256

/*
 * ioka_create - take hold of @vdev's DMA context, in the owner's context
 * @vdev: the device; @group_fd must be the file of its group
 * @group_fd, @container_fd: the owner's descriptors of them
 * @ranges, @nr: the owner's DMA mappings (iova, size, vaddr), copied from user space
 *
 * Each range's vaddr must lie in one shared mapping of a memfd, shmem or hugetlbfs
 * file of the calling process.  Returns the context, which holds a reference on the
 * group file, the container file and each memory file, or an ERR_PTR: -EBADF,
 * -EINVAL (not a VFIO group with @vdev, not a VFIO container, a malformed or
 * overlapping range), -EOPNOTSUPP (memory not backed by such a file).  Logs why.
 */
struct ioka_ctx *ioka_create(struct vfio_device *vdev, int group_fd, int container_fd,
			     const struct vfio_keepalive_range *ranges, u32 nr);

/* The held files; the context keeps its references. */
struct file *ioka_group(struct ioka_ctx *ctx);
struct file *ioka_container(struct ioka_ctx *ctx);
u32 ioka_nr_ranges(struct ioka_ctx *ctx);

/* Range @i as RECLAIM reports it (vaddr 0, memfd -1, offset set) and its file. */
struct file *ioka_range(struct ioka_ctx *ctx, u32 i, struct vfio_keepalive_range *out);

/* May the current task reclaim: CAP_SYS_ADMIN, or read-write on the group's node. */
bool ioka_may_reclaim(struct ioka_ctx *ctx);

/* Drop every reference.  The last one on the group file unmaps and unpins. */
void ioka_destroy(struct ioka_ctx *ctx);

#endif /* _KEEPALIVE_IOMMU_KEEPALIVE_H */
