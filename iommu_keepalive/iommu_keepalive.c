// SPDX-License-Identifier: GPL-2.0
/*
 * iommu_keepalive: keep a VFIO type1 container's DMA context while its owner changes.
 *
 * What keeps the context alive is references, not copies.  type1 tears a container's
 * domain down, unmaps it and unpins its pages only when the last group leaves the
 * container, which happens when the group file is released; closing the container
 * file ends VADDR updates for good.  So holding the owner's group and container files
 * keeps the domain attached, every IOVA mapped and every page pinned, and the device's
 * DMA goes on while the device has no owner.  Holding the memory files behind the
 * mappings lets a new owner map the same memory object again and take the mappings
 * over with VFIO_DMA_UNMAP_FLAG_VADDR and VFIO_DMA_MAP_FLAG_VADDR, which never unmap
 * an IOVA (type1's vfio_change_dma_owner() moves the pinned-page accounting).
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/vfio.h>

#include <keepalive/iommu_keepalive.h>

struct ioka_range {
	u64 iova, size, offset;
	struct file *file;
};

struct ioka_ctx {
	struct file *group;
	struct file *container;
	u32 nr;
	struct ioka_range range[];
};

static const char *ioka_name(struct vfio_device *vdev)
{
	return dev_name(vdev->dev);
}

/* A file whose pages a new owner can map again: memfd and shmem, or hugetlbfs. */
static bool ioka_file_ok(struct file *file)
{
	unsigned long magic = file_inode(file)->i_sb->s_magic;

	return magic == TMPFS_MAGIC || magic == HUGETLBFS_MAGIC;
}

/* Resolve @r's vaddr in the current process to (file, offset). */
static int ioka_resolve(struct vfio_device *vdev, const struct vfio_keepalive_range *r,
			struct ioka_range *out)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	int ret = 0;

	if (!mm)
		return -EINVAL;
	mmap_read_lock(mm);
	vma = vma_lookup(mm, r->vaddr);
	if (!vma || r->vaddr + r->size > vma->vm_end) {
		pr_info("%s: DMA range iova %#llx: vaddr %#llx+%#llx is not one mapping\n",
			ioka_name(vdev), r->iova, r->vaddr, r->size);
		ret = -EINVAL;
	} else if (!vma->vm_file || !(vma->vm_flags & VM_SHARED) ||
		   !ioka_file_ok(vma->vm_file)) {
		pr_info("%s: DMA range iova %#llx: not a shared memfd, shmem or hugetlbfs mapping; a new owner could not map the same memory\n",
			ioka_name(vdev), r->iova);
		ret = -EOPNOTSUPP;
	} else {
		out->iova = r->iova;
		out->size = r->size;
		out->offset = r->vaddr - vma->vm_start + ((u64)vma->vm_pgoff << PAGE_SHIFT);
		out->file = get_file(vma->vm_file);
	}
	mmap_read_unlock(mm);
	return ret;
}

static int ioka_check_ranges(struct vfio_device *vdev, const struct vfio_keepalive_range *r,
			     u32 nr)
{
	u32 i, j;

	for (i = 0; i < nr; i++) {
		if (r[i].flags || !r[i].size || r[i].memfd || r[i].offset ||
		    !PAGE_ALIGNED(r[i].iova) || !PAGE_ALIGNED(r[i].size) ||
		    !PAGE_ALIGNED(r[i].vaddr) || r[i].iova + r[i].size < r[i].iova ||
		    r[i].vaddr + r[i].size < r[i].vaddr) {
			pr_info("%s: DMA range %u (iova %#llx size %#llx vaddr %#llx): must be page-aligned, non-empty, with memfd, offset and flags 0\n",
				ioka_name(vdev), i, r[i].iova, r[i].size, r[i].vaddr);
			return -EINVAL;
		}
		for (j = 0; j < i; j++) {
			if (r[i].iova < r[j].iova + r[j].size &&
			    r[j].iova < r[i].iova + r[i].size) {
				pr_info("%s: DMA ranges %u and %u overlap\n", ioka_name(vdev),
					j, i);
				return -EINVAL;
			}
		}
	}
	return 0;
}

struct ioka_ctx *ioka_create(struct vfio_device *vdev, int group_fd, int container_fd,
			     const struct vfio_keepalive_range *ranges, u32 nr)
{
	struct ioka_ctx *ctx;
	struct inode *inode;
	int ret;
	u32 i;

	if (nr > IOKA_MAX_RANGES)
		return ERR_PTR(-E2BIG);
	ret = ioka_check_ranges(vdev, ranges, nr);
	if (ret)
		return ERR_PTR(ret);
	ctx = kzalloc(struct_size(ctx, range, nr), GFP_KERNEL_ACCOUNT);
	if (!ctx)
		return ERR_PTR(-ENOMEM);

	ret = -EBADF;
	ctx->group = fget(group_fd);
	ctx->container = fget(container_fd);
	if (!ctx->group || !ctx->container) {
		pr_info("%s: group_fd %d or container_fd %d is not open\n", ioka_name(vdev),
			group_fd, container_fd);
		goto fail;
	}
	ret = -EINVAL;
	if (!vfio_file_is_group(ctx->group) || !vfio_file_has_dev(ctx->group, vdev)) {
		pr_info("%s: group_fd %d is not the VFIO group of this device\n",
			ioka_name(vdev), group_fd);
		goto fail;
	}
	inode = file_inode(ctx->container);
	if (!S_ISCHR(inode->i_mode) || inode->i_rdev != MKDEV(MISC_MAJOR, VFIO_MINOR)) {
		pr_info("%s: container_fd %d is not /dev/vfio/vfio\n", ioka_name(vdev),
			container_fd);
		goto fail;
	}
	for (i = 0; i < nr; i++) {
		ret = ioka_resolve(vdev, &ranges[i], &ctx->range[i]);
		if (ret)
			goto fail;
		ctx->nr++;
	}
	return ctx;
fail:
	ioka_destroy(ctx);
	return ERR_PTR(ret);
}
EXPORT_SYMBOL_GPL(ioka_create);

struct file *ioka_group(struct ioka_ctx *ctx)
{
	return ctx->group;
}
EXPORT_SYMBOL_GPL(ioka_group);

struct file *ioka_container(struct ioka_ctx *ctx)
{
	return ctx->container;
}
EXPORT_SYMBOL_GPL(ioka_container);

u32 ioka_nr_ranges(struct ioka_ctx *ctx)
{
	return ctx->nr;
}
EXPORT_SYMBOL_GPL(ioka_nr_ranges);

struct file *ioka_range(struct ioka_ctx *ctx, u32 i, struct vfio_keepalive_range *out)
{
	memset(out, 0, sizeof(*out));
	out->iova = ctx->range[i].iova;
	out->size = ctx->range[i].size;
	out->offset = ctx->range[i].offset;
	out->memfd = -1;
	return ctx->range[i].file;
}
EXPORT_SYMBOL_GPL(ioka_range);

bool ioka_may_reclaim(struct ioka_ctx *ctx)
{
	if (capable(CAP_SYS_ADMIN))
		return true;
	return !inode_permission(file_mnt_user_ns(ctx->group), file_inode(ctx->group),
				 MAY_READ | MAY_WRITE);
}
EXPORT_SYMBOL_GPL(ioka_may_reclaim);

void ioka_destroy(struct ioka_ctx *ctx)
{
	u32 i;

	for (i = 0; i < ctx->nr; i++)
		fput(ctx->range[i].file);
	if (ctx->container)
		fput(ctx->container);
	if (ctx->group)
		fput(ctx->group);
	kfree(ctx);
}
EXPORT_SYMBOL_GPL(ioka_destroy);

MODULE_DESCRIPTION("Keep a VFIO container's DMA context while its owner is replaced");
MODULE_AUTHOR("The kvm-live-upgrade authors");
MODULE_LICENSE("GPL");
