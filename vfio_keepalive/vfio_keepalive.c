// SPDX-License-Identifier: GPL-2.0
/*
 * vfio_keepalive: a vfio-pci variant driver whose devices keep their DMA and interrupts
 * while the process that owns them is replaced.
 *
 * Bound to a device (driver_override "vfio-keepalive"), it is vfio-pci: every VFIO
 * operation goes to vfio-pci-core.  It adds VFIO_KEEPALIVE_ARM and _DISARM on the
 * device file and /dev/vfio-keepalive with _GET_INFO and _RECLAIM
 * (include/uapi/linux/vfio_keepalive.h).
 *
 * Arming takes references on the owner's device file, and (through iommu_keepalive)
 * on its group file, container file and DMA memory files, and on the eventfds that
 * SET_IRQS connected to the device's MSI/MSI-X vectors, which this driver records as
 * they pass.  With those held, the owner's exit runs none of VFIO's release paths:
 * vfio-pci-core's close_device, which would clear bus mastering, free the vectors
 * (and their IRTEs) and reset the device, does not run; the vectors' handlers go on
 * signalling their eventfds (and any irq-bypass producer stays registered); type1
 * keeps the domain, the mappings and the pins.  The device has an owner for as long as
 * the owner file ARM returned is open.  When it closes, the device is ownerless: the
 * driver counts the signals on each eventfd and starts the reclaim timer.  RECLAIM with
 * the token gives a new process new descriptors of all those files.  If the timer
 * fires, or the driver is unbound, the references are dropped, and the last one runs
 * the stock close: reset and release.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/kref.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/poll.h>
#include <linux/random.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vfio.h>
#include <linux/vfio_pci_core.h>
#include <crypto/algapi.h>

#include <keepalive/iommu_keepalive.h>

#define VKA_MAX_IRQS	64
#define VKA_NO_IRQ	(~0U)

static unsigned int default_timeout_ms = 30000;
module_param(default_timeout_ms, uint, 0644);
MODULE_PARM_DESC(default_timeout_ms,
		 "Reclaim timeout of a device whose owner armed it with timeout_ms 0 (ms)");

static unsigned int max_timeout_ms = 3600000;
module_param(max_timeout_ms, uint, 0644);
MODULE_PARM_DESC(max_timeout_ms, "The longest reclaim timeout ARM accepts (ms)");

/* One recorded trigger: the eventfd SET_IRQS connected to a vector. */
struct vka_irq {
	struct file *file;
	struct eventfd_ctx *ctx;
	/* counting while ownerless */
	wait_queue_entry_t wait;
	wait_queue_head_t *wqh;
	atomic64_t count;
};

/*
 * An armed device's references; vka_device.lock protects it.  The token is the
 * driver's own (ARM makes it, each RECLAIM makes the next), and is zeroed with the keep.
 */
struct vka_keep {
	u8 token[VFIO_KEEPALIVE_TOKEN_SIZE];
	struct file *device;		/* the owner's VFIO device file */
	struct ioka_ctx *dma;		/* group, container, memory */
	struct file *owner;		/* the current owner file; NULL while ownerless */
	unsigned int timeout_ms;
	ktime_t ownerless_since;
	pid_t owner_pid;
};

/*
 * What an owner file points to.  The device may be unbound while an owner file is
 * still open: remove() clears @vka under vka_devices_lock, and the last reference
 * frees the link.
 */
struct vka_link {
	struct kref kref;
	struct vka_device *vka;
};

struct vka_device {
	struct vfio_pci_core_device core;	/* first: vfio_alloc_device() */
	struct mutex lock;
	struct vka_link *link;
	struct vka_keep *keep;
	/* the triggers of irq_index's vectors, as SET_IRQS left them */
	u32 irq_index;
	struct vka_irq irq[VKA_MAX_IRQS];
	struct delayed_work release_work;	/* timeout or unbind: drop the keep */
	bool release_unbind;
	struct list_head node;			/* on vka_devices */
};

static DEFINE_MUTEX(vka_devices_lock);
static LIST_HEAD(vka_devices);

static struct vka_device *to_vka(struct vfio_device *core_vdev)
{
	return container_of(core_vdev, struct vka_device, core.vdev);
}

static const char *vka_name(struct vka_device *vka)
{
	return pci_name(vka->core.pdev);
}

/* ---- the recorded triggers ---- */

static void vka_irq_drop(struct vka_irq *irq)
{
	if (!irq->file)
		return;
	/* an old owner that kept its device file may change vectors while ownerless */
	if (irq->wqh) {
		remove_wait_queue(irq->wqh, &irq->wait);
		irq->wqh = NULL;
	}
	eventfd_ctx_put(irq->ctx);
	fput(irq->file);
	irq->file = NULL;
	irq->ctx = NULL;
}

static void vka_irqs_drop(struct vka_device *vka)
{
	int i;

	for (i = 0; i < VKA_MAX_IRQS; i++)
		vka_irq_drop(&vka->irq[i]);
	vka->irq_index = VKA_NO_IRQ;
}

/* The vectors up to the last one with an eventfd: what ARM and RECLAIM report. */
static u32 vka_nr_irqs(struct vka_device *vka)
{
	u32 i, n = 0;

	for (i = 0; i < VKA_MAX_IRQS; i++)
		if (vka->irq[i].file)
			n = i + 1;
	return n;
}

/* An eventfd signal while ownerless: count it, and leave the count in the eventfd. */
static int vka_irq_wake(wait_queue_entry_t *wait, unsigned int mode, int sync, void *key)
{
	struct vka_irq *irq = container_of(wait, struct vka_irq, wait);

	if (key_to_poll(key) & EPOLLIN)
		atomic64_inc(&irq->count);
	return 0;
}

/* vfs_poll() hands the wait queue to a poll_table callback; this carries the irq. */
struct vka_irq_pt {
	poll_table pt;
	struct vka_irq *irq;
};

static void vka_irq_queue(struct file *file, wait_queue_head_t *wqh, poll_table *pt)
{
	struct vka_irq *irq = container_of(pt, struct vka_irq_pt, pt)->irq;

	irq->wqh = wqh;
	add_wait_queue(wqh, &irq->wait);
}

static void vka_count_start(struct vka_device *vka)
{
	struct vka_irq_pt p;
	int i;

	for (i = 0; i < VKA_MAX_IRQS; i++) {
		struct vka_irq *irq = &vka->irq[i];

		if (!irq->file || irq->wqh)
			continue;
		init_waitqueue_func_entry(&irq->wait, vka_irq_wake);
		init_poll_funcptr(&p.pt, vka_irq_queue);
		p.irq = irq;
		vfs_poll(irq->file, &p.pt);
	}
}

static void vka_count_stop(struct vka_device *vka)
{
	int i;

	for (i = 0; i < VKA_MAX_IRQS; i++) {
		struct vka_irq *irq = &vka->irq[i];

		if (irq->wqh) {
			remove_wait_queue(irq->wqh, &irq->wait);
			irq->wqh = NULL;
		}
	}
}

static void vka_count_reset(struct vka_device *vka)
{
	int i;

	for (i = 0; i < VKA_MAX_IRQS; i++)
		atomic64_set(&vka->irq[i].count, 0);
}

/*
 * VFIO_DEVICE_SET_IRQS passes through here: forward it, then record what it left
 * connected to the MSI/MSI-X vectors.  An armed device refuses INTx: it cannot be kept.
 */
static long vka_set_irqs(struct vka_device *vka, unsigned long arg)
{
	size_t minsz = offsetofend(struct vfio_irq_set, count);
	struct vfio_irq_set hdr;
	s32 __user *fds;
	long ret;
	u32 i;

	if (copy_from_user(&hdr, (void __user *)arg, minsz))
		return -EFAULT;

	mutex_lock(&vka->lock);
	if (vka->keep && hdr.index == VFIO_PCI_INTX_IRQ_INDEX &&
	    (hdr.flags & VFIO_IRQ_SET_ACTION_TRIGGER) &&
	    !((hdr.flags & VFIO_IRQ_SET_DATA_NONE) && !hdr.count)) {
		pr_info("%s: INTx refused while keepalive is armed: INTx cannot be kept (disarm first)\n",
			vka_name(vka));
		ret = -EBUSY;
		goto out;
	}
	ret = vfio_pci_core_ioctl(&vka->core.vdev, VFIO_DEVICE_SET_IRQS, arg);
	if (ret || !(hdr.flags & VFIO_IRQ_SET_ACTION_TRIGGER))
		goto out;
	if (hdr.index != VFIO_PCI_MSI_IRQ_INDEX && hdr.index != VFIO_PCI_MSIX_IRQ_INDEX) {
		/* INTx on (vfio-pci-core allows it only with no MSI/MSI-X): nothing to keep */
		if (hdr.index == VFIO_PCI_INTX_IRQ_INDEX && vka->core.irq_type == hdr.index)
			vka_irqs_drop(vka);
		goto out;
	}
	if (vka->core.irq_type != hdr.index) {
		/* disabled: every vector of the index is gone */
		vka_irqs_drop(vka);
		goto out;
	}
	if (vka->irq_index != hdr.index) {
		vka_irqs_drop(vka);
		vka->irq_index = hdr.index;
	}
	if (!(hdr.flags & VFIO_IRQ_SET_DATA_EVENTFD))
		goto out;
	/*
	 * vfio-pci-core accepted these fds a moment ago; read them again to record them.  An
	 * owner that changes the array in between only gets a keep that differs from what
	 * vfio-pci-core connected: its own loss, nobody else's.
	 */
	fds = (s32 __user *)(arg + minsz);
	for (i = 0; i < hdr.count; i++) {
		u32 v = hdr.start + i;
		struct file *file;
		s32 fd;

		if (v >= VKA_MAX_IRQS)
			break;
		vka_irq_drop(&vka->irq[v]);
		if (get_user(fd, fds + i) || fd < 0)
			continue;
		file = fget(fd);
		if (!file)
			continue;
		vka->irq[v].ctx = eventfd_ctx_fileget(file);
		if (IS_ERR(vka->irq[v].ctx)) {
			vka->irq[v].ctx = NULL;
			fput(file);
			continue;
		}
		vka->irq[v].file = file;
	}
out:
	mutex_unlock(&vka->lock);
	return ret;
}

/* ---- ownership ---- */

static int vka_owner_release(struct inode *inode, struct file *file);

static const struct file_operations vka_owner_fops = {
	.owner = THIS_MODULE,
	.release = vka_owner_release,
	.llseek = noop_llseek,
};

static void vka_link_free(struct kref *kref)
{
	kfree(container_of(kref, struct vka_link, kref));
}

/* A new owner file of @vka. */
static struct file *vka_owner_file(struct vka_device *vka)
{
	struct file *file;

	kref_get(&vka->link->kref);
	file = anon_inode_getfile("[vfio-keepalive-owner]", &vka_owner_fops, vka->link,
				  O_RDWR | O_CLOEXEC);
	if (IS_ERR(file))
		kref_put(&vka->link->kref, vka_link_free);
	return file;
}

static void vka_ownerless(struct vka_device *vka)
{
	struct vka_keep *keep = vka->keep;

	keep->owner = NULL;
	keep->ownerless_since = ktime_get();
	vka_count_reset(vka);
	vka_count_start(vka);
	mod_delayed_work(system_wq, &vka->release_work, msecs_to_jiffies(keep->timeout_ms));
	pr_info("%s: owner (pid %d) is gone; the device is kept: %u interrupt vector(s), %u DMA range(s), %u ms to reclaim it\n",
		vka_name(vka), keep->owner_pid, vka_nr_irqs(vka), ioka_nr_ranges(keep->dma),
		keep->timeout_ms);
}

static int vka_owner_release(struct inode *inode, struct file *file)
{
	struct vka_link *link = file->private_data;
	struct vka_device *vka;

	mutex_lock(&vka_devices_lock);
	vka = link->vka;
	if (vka) {
		mutex_lock(&vka->lock);
		if (vka->keep && vka->keep->owner == file)
			vka_ownerless(vka);
		mutex_unlock(&vka->lock);
	}
	mutex_unlock(&vka_devices_lock);
	kref_put(&link->kref, vka_link_free);
	return 0;
}

/*
 * Take the keep off @vka; the caller drops it with vka_keep_free() after unlocking.
 * The device file's last reference runs close_device (reset), the group's unpins.
 */
static struct vka_keep *vka_keep_take(struct vka_device *vka)
{
	struct vka_keep *keep = vka->keep;

	lockdep_assert_held(&vka->lock);
	vka_count_stop(vka);
	vka->keep = NULL;
	return keep;
}

static void vka_keep_free(struct vka_keep *keep)
{
	if (!keep)
		return;
	fput(keep->device);
	ioka_destroy(keep->dma);
	kfree_sensitive(keep);
}

static void vka_release_work(struct work_struct *work)
{
	struct vka_device *vka = container_of(to_delayed_work(work), struct vka_device,
					      release_work);
	struct vka_keep *keep = NULL;

	mutex_lock(&vka->lock);
	if (vka->keep && vka->release_unbind) {
		pr_info("%s: driver unbind: keepalive released; the device is reset and released once its files close\n",
			vka_name(vka));
		keep = vka_keep_take(vka);
	} else if (vka->keep && !vka->keep->owner) {
		pr_warn("%s: nobody reclaimed the device within %u ms: it is reset and released\n",
			vka_name(vka), vka->keep->timeout_ms);
		keep = vka_keep_take(vka);
	}
	vka->release_unbind = false;
	mutex_unlock(&vka->lock);
	vka_keep_free(keep);
}

static long vka_arm(struct vka_device *vka, void __user *uarg)
{
	size_t minsz = offsetofend(struct vfio_keepalive_arm, pad2);
	struct vfio_keepalive_range *ranges = NULL;
	struct vfio_keepalive_arm arm;
	struct vka_keep *keep = NULL;
	struct file *devf = NULL, *owner;
	static const u8 zero[VFIO_KEEPALIVE_TOKEN_SIZE];
	long ret;
	int fd;

	if (copy_from_user(&arm, uarg, minsz))
		return -EFAULT;
	if (arm.argsz < minsz || arm.flags || arm.pad || arm.pad2) {
		pr_info("%s: ARM: argsz %u (needs %zu) or flags %#x or padding not 0\n",
			vka_name(vka), arm.argsz, minsz, arm.flags);
		return -EINVAL;
	}
	/* Since API version 2 the token is the driver's: a caller's own is refused. */
	if (crypto_memneq(arm.token, zero, sizeof(zero))) {
		pr_info("%s: ARM: token must be zeros in: the driver makes it (API version %d)\n",
			vka_name(vka), VFIO_KEEPALIVE_API_VERSION);
		return -EINVAL;
	}
	if (arm.timeout_ms > max_timeout_ms) {
		pr_info("%s: ARM: timeout %u ms is above max_timeout_ms %u\n", vka_name(vka),
			arm.timeout_ms, max_timeout_ms);
		return -EINVAL;
	}
	if (arm.nr_ranges > IOKA_MAX_RANGES) {
		pr_info("%s: ARM: %u DMA ranges, at most %u\n", vka_name(vka), arm.nr_ranges,
			IOKA_MAX_RANGES);
		return -E2BIG;
	}
	if (arm.nr_ranges) {
		ranges = memdup_user(u64_to_user_ptr(arm.ranges),
				     array_size(arm.nr_ranges, sizeof(*ranges)));
		if (IS_ERR(ranges))
			return PTR_ERR(ranges);
	}

	mutex_lock(&vka->lock);
	ret = -EBUSY;
	if (vka->keep) {
		pr_info("%s: ARM: already armed\n", vka_name(vka));
		goto out;
	}
	ret = -EOPNOTSUPP;
	if (vka->core.irq_type == VFIO_PCI_INTX_IRQ_INDEX) {
		pr_info("%s: ARM refused: the device uses INTx, which cannot be kept (its line is shared and level-triggered); use MSI or MSI-X\n",
			vka_name(vka));
		goto out;
	}
	ret = -E2BIG;
	if (vka->core.num_ctx > VKA_MAX_IRQS) {
		pr_info("%s: ARM refused: %d interrupt vectors, at most %d can be kept\n",
			vka_name(vka), vka->core.num_ctx, VKA_MAX_IRQS);
		goto out;
	}
	ret = -EBADF;
	devf = fget(arm.device_fd);
	if (!devf || devf->private_data != &vka->core.vdev) {
		pr_info("%s: ARM: device_fd %d is not this device's VFIO file\n",
			vka_name(vka), arm.device_fd);
		goto out;
	}
	ret = -ENOMEM;
	keep = kzalloc(sizeof(*keep), GFP_KERNEL_ACCOUNT);
	if (!keep)
		goto out;
	keep->dma = ioka_create(&vka->core.vdev, arm.group_fd, arm.container_fd, ranges,
				arm.nr_ranges);
	if (IS_ERR(keep->dma)) {
		ret = PTR_ERR(keep->dma);
		goto out;
	}
	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		ret = fd;
		goto out_dma;
	}
	owner = vka_owner_file(vka);
	if (IS_ERR(owner)) {
		put_unused_fd(fd);
		ret = PTR_ERR(owner);
		goto out_dma;
	}
	arm.owner_fd = fd;
	arm.irq_index = vka->core.irq_type == VFIO_PCI_NUM_IRQS ? VKA_NO_IRQ : vka->irq_index;
	arm.nr_irqs = vka_nr_irqs(vka);
	get_random_bytes(arm.token, sizeof(arm.token));
	if (copy_to_user(uarg, &arm, minsz)) {
		memzero_explicit(arm.token, sizeof(arm.token));
		put_unused_fd(fd);
		/* not the owner yet: its release sees no keep and changes nothing */
		fput(owner);
		ret = -EFAULT;
		goto out_dma;
	}
	memcpy(keep->token, arm.token, sizeof(keep->token));
	memzero_explicit(arm.token, sizeof(arm.token));
	keep->device = devf;
	keep->owner = owner;
	keep->owner_pid = task_tgid_nr(current);
	keep->timeout_ms = arm.timeout_ms ?: default_timeout_ms;
	vka->keep = keep;
	fd_install(fd, owner);
	pr_info("%s: keepalive armed by pid %d: %s, %u vector(s), %u DMA range(s), timeout %u ms\n",
		vka_name(vka), keep->owner_pid,
		arm.irq_index == VFIO_PCI_MSIX_IRQ_INDEX ? "MSI-X" :
		arm.irq_index == VFIO_PCI_MSI_IRQ_INDEX ? "MSI" : "no interrupts",
		arm.nr_irqs, arm.nr_ranges, keep->timeout_ms);
	mutex_unlock(&vka->lock);
	kfree(ranges);
	return 0;

out_dma:
	ioka_destroy(keep->dma);
out:
	mutex_unlock(&vka->lock);
	kfree(keep);
	if (devf)
		fput(devf);
	kfree(ranges);
	return ret;
}

static long vka_disarm(struct vka_device *vka, void __user *uarg)
{
	size_t minsz = offsetofend(struct vfio_keepalive_disarm, flags);
	struct vfio_keepalive_disarm d;
	struct vka_keep *keep;

	if (copy_from_user(&d, uarg, minsz))
		return -EFAULT;
	if (d.argsz < minsz || d.flags)
		return -EINVAL;
	mutex_lock(&vka->lock);
	keep = vka->keep;
	if (!keep) {
		mutex_unlock(&vka->lock);
		return -ENOENT;
	}
	/* an owner file that stays open finds no keep when it closes: it means nothing now */
	keep = vka_keep_take(vka);
	mutex_unlock(&vka->lock);
	cancel_delayed_work(&vka->release_work);
	pr_info("%s: keepalive disarmed by pid %d\n", vka_name(vka), task_tgid_nr(current));
	vka_keep_free(keep);
	return 0;
}

/* ---- reclaim ---- */

/* Descriptors RECLAIM installs, reserved first so that nothing is installed on error. */
struct vka_fds {
	int n;
	int fd[4 + VKA_MAX_IRQS + IOKA_MAX_RANGES];
	struct file *file[4 + VKA_MAX_IRQS + IOKA_MAX_RANGES];
};

static int vka_fds_add(struct vka_fds *f, struct file *file)
{
	int fd = get_unused_fd_flags(O_CLOEXEC);

	if (fd < 0)
		return fd;
	f->fd[f->n] = fd;
	f->file[f->n] = file;
	f->n++;
	return fd;
}

static void vka_fds_cancel(struct vka_fds *f)
{
	while (f->n--)
		put_unused_fd(f->fd[f->n]);
}

static void vka_fds_install(struct vka_fds *f)
{
	int i;

	for (i = 0; i < f->n; i++)
		fd_install(f->fd[i], get_file(f->file[i]));
}

static struct vka_device *vka_find(const char *name)
{
	struct vka_device *vka;

	list_for_each_entry(vka, &vka_devices, node)
		if (!strcmp(vka_name(vka), name))
			return vka;
	return NULL;
}

static int vka_reclaim_out(struct vka_device *vka, struct vfio_keepalive_reclaim *r,
			   struct vka_fds *f)
{
	struct vka_keep *keep = vka->keep;
	s32 __user *ufds = u64_to_user_ptr(r->irq_fds);
	u64 __user *ucounts = u64_to_user_ptr(r->irq_counts);
	struct vfio_keepalive_range __user *uranges = u64_to_user_ptr(r->ranges);
	u32 i, nr_irqs = vka_nr_irqs(vka), nr_ranges = ioka_nr_ranges(keep->dma);
	int fd;

	if (r->nr_irqs < nr_irqs || r->nr_ranges < nr_ranges) {
		r->nr_irqs = nr_irqs;
		r->nr_ranges = nr_ranges;
		return -ENOSPC;
	}
	fd = vka_fds_add(f, keep->device);
	if (fd < 0)
		return fd;
	r->device_fd = fd;
	fd = vka_fds_add(f, ioka_group(keep->dma));
	if (fd < 0)
		return fd;
	r->group_fd = fd;
	fd = vka_fds_add(f, ioka_container(keep->dma));
	if (fd < 0)
		return fd;
	r->container_fd = fd;
	/* indexed by vector: -1 and 0 for a vector without an eventfd */
	for (i = 0; i < nr_irqs; i++) {
		struct vka_irq *irq = &vka->irq[i];

		fd = -1;
		if (irq->file) {
			fd = vka_fds_add(f, irq->file);
			if (fd < 0)
				return fd;
		}
		if (put_user(fd, ufds + i) || put_user(atomic64_read(&irq->count), ucounts + i))
			return -EFAULT;
	}
	for (i = 0; i < nr_ranges; i++) {
		struct vfio_keepalive_range out;
		struct file *file = ioka_range(keep->dma, i, &out);

		fd = vka_fds_add(f, file);
		if (fd < 0)
			return fd;
		out.memfd = fd;
		if (copy_to_user(uranges + i, &out, sizeof(out)))
			return -EFAULT;
	}
	r->irq_index = vka->core.irq_type == VFIO_PCI_NUM_IRQS ? VKA_NO_IRQ : vka->irq_index;
	r->nr_irqs = nr_irqs;
	r->nr_ranges = nr_ranges;
	r->ownerless_ns = ktime_to_ns(ktime_sub(ktime_get(), keep->ownerless_since));
	return 0;
}

/* Anyone may open /dev/vfio-keepalive: what RECLAIM logs is rate-limited. */
static long vka_reclaim(void __user *uarg)
{
	size_t minsz = offsetofend(struct vfio_keepalive_reclaim, ownerless_ns);
	struct vfio_keepalive_reclaim r;
	struct vka_device *vka;
	struct vka_keep *keep, *drop = NULL;
	struct file *owner = NULL;
	struct vka_fds *f;
	long ret;
	int owner_fd = -1;

	if (copy_from_user(&r, uarg, minsz)) {
		memzero_explicit(&r, sizeof(r));	/* what part of a token came */
		return -EFAULT;
	}
	if (r.argsz < minsz || (r.flags & ~VFIO_KEEPALIVE_RECLAIM_DISARM) || r.pad) {
		pr_info_ratelimited("RECLAIM: argsz %u (needs %zu) or flags %#x not valid\n",
				    r.argsz, minsz, r.flags);
		memzero_explicit(r.token, sizeof(r.token));
		return -EINVAL;
	}
	r.device[sizeof(r.device) - 1] = 0;
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f) {
		memzero_explicit(r.token, sizeof(r.token));
		return -ENOMEM;
	}

	mutex_lock(&vka_devices_lock);
	vka = vka_find(r.device);
	if (!vka) {
		mutex_unlock(&vka_devices_lock);
		pr_info_ratelimited("RECLAIM by pid %d: no device %s is bound to vfio-keepalive\n",
				    task_tgid_nr(current), r.device);
		kfree(f);
		memzero_explicit(r.token, sizeof(r.token));
		return -ENOENT;
	}
	mutex_lock(&vka->lock);
	keep = vka->keep;
	/*
	 * Whether a device is kept is told only to who may reclaim it: its group's access
	 * is known only while it is kept, so of a device that is not, only CAP_SYS_ADMIN
	 * learns so (ENOENT); everyone else gets EPERM, as for a kept one.  Not audited:
	 * the check only decides which error to give.
	 */
	ret = -EPERM;
	if (keep ? !ioka_may_reclaim(keep->dma) :
	    !ns_capable_noaudit(&init_user_ns, CAP_SYS_ADMIN)) {
		pr_warn_ratelimited("%s: RECLAIM by pid %d refused: needs CAP_SYS_ADMIN or access to the device's VFIO group\n",
				    vka_name(vka), task_tgid_nr(current));
		goto out;
	}
	ret = -ENOENT;
	if (!keep) {
		pr_info_ratelimited("%s: RECLAIM by pid %d: the device is not kept\n",
				    vka_name(vka), task_tgid_nr(current));
		goto out;
	}
	ret = -EACCES;
	if (crypto_memneq(keep->token, r.token, sizeof(keep->token))) {
		pr_warn_ratelimited("%s: RECLAIM by pid %d (%s) refused: wrong token\n",
				    vka_name(vka), task_tgid_nr(current), current->comm);
		goto out;
	}
	ret = -EBUSY;
	if (keep->owner) {
		pr_info_ratelimited("%s: RECLAIM by pid %d: the device still has its owner (pid %d)\n",
				    vka_name(vka), task_tgid_nr(current), keep->owner_pid);
		goto out;
	}
	/* counts stop here: what arrives from now on is the new owner's, in the eventfds */
	vka_count_stop(vka);
	if (!(r.flags & VFIO_KEEPALIVE_RECLAIM_DISARM)) {
		owner = vka_owner_file(vka);
		if (IS_ERR(owner)) {
			ret = PTR_ERR(owner);
			owner = NULL;
			goto out_count;
		}
		owner_fd = vka_fds_add(f, owner);
		if (owner_fd < 0) {
			ret = owner_fd;
			goto out_count;
		}
	}
	r.owner_fd = owner_fd;
	ret = vka_reclaim_out(vka, &r, f);
	if (!ret) {
		/* the next token: the one presented is spent (zeros once disarmed) */
		if (r.flags & VFIO_KEEPALIVE_RECLAIM_DISARM)
			memset(r.token, 0, sizeof(r.token));
		else
			get_random_bytes(r.token, sizeof(r.token));
		if (copy_to_user(uarg, &r, minsz))
			ret = -EFAULT;
	}
	if (ret) {
		if (ret == -ENOSPC && copy_to_user(uarg, &r, minsz))
			ret = -EFAULT;
		goto out_count;
	}

	/* commit: nothing fails from here on */
	vka_fds_install(f);
	cancel_delayed_work(&vka->release_work);
	pr_info("%s: reclaimed by pid %d after %llu ms without an owner%s\n", vka_name(vka),
		task_tgid_nr(current), div_u64(r.ownerless_ns, NSEC_PER_MSEC),
		r.flags & VFIO_KEEPALIVE_RECLAIM_DISARM ? "; keepalive disarmed" : "");
	if (r.flags & VFIO_KEEPALIVE_RECLAIM_DISARM) {
		drop = vka_keep_take(vka);
	} else {
		memcpy(keep->token, r.token, sizeof(keep->token));
		keep->owner = owner;
		keep->owner_pid = task_tgid_nr(current);
	}
	ret = 0;
	goto out;

out_count:
	vka_fds_cancel(f);
	vka_count_start(vka);
out:
	mutex_unlock(&vka->lock);
	mutex_unlock(&vka_devices_lock);
	/*
	 * The creation reference: after a commit the descriptor holds its own; otherwise
	 * the file goes, and its release sees it is not the owner.
	 */
	if (owner)
		fput(owner);
	vka_keep_free(drop);
	kfree(f);
	memzero_explicit(r.token, sizeof(r.token));
	return ret;
}

static long vka_info(void __user *uarg)
{
	size_t minsz = offsetofend(struct vfio_keepalive_info, pad);
	struct vfio_keepalive_info info;

	if (copy_from_user(&info, uarg, offsetofend(struct vfio_keepalive_info, flags)))
		return -EFAULT;
	if (info.argsz < minsz || info.flags)
		return -EINVAL;
	info.api_version = VFIO_KEEPALIVE_API_VERSION;
	info.default_timeout_ms = default_timeout_ms;
	info.max_timeout_ms = max_timeout_ms;
	info.max_ranges = IOKA_MAX_RANGES;
	info.max_irqs = VKA_MAX_IRQS;
	info.pad = 0;
	return copy_to_user(uarg, &info, minsz) ? -EFAULT : 0;
}

static long vka_misc_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case VFIO_KEEPALIVE_GET_INFO:
		return vka_info((void __user *)arg);
	case VFIO_KEEPALIVE_RECLAIM:
		return vka_reclaim((void __user *)arg);
	}
	return -ENOTTY;
}

static const struct file_operations vka_misc_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = vka_misc_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice vka_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "vfio-keepalive",
	.fops = &vka_misc_fops,
	/* RECLAIM checks the caller's rights on the device's group itself */
	.mode = 0666,
};

/* ---- vfio_device_ops ---- */

static int vka_open_device(struct vfio_device *core_vdev)
{
	struct vfio_pci_core_device *core = &to_vka(core_vdev)->core;
	int ret;

	ret = vfio_pci_core_enable(core);
	if (ret)
		return ret;
	vfio_pci_core_finish_enable(core);
	return 0;
}

static void vka_close_device(struct vfio_device *core_vdev)
{
	struct vka_device *vka = to_vka(core_vdev);

	/* no keep can exist: it holds the device file */
	mutex_lock(&vka->lock);
	vka_irqs_drop(vka);
	mutex_unlock(&vka->lock);
	vfio_pci_core_close_device(core_vdev);
}

static long vka_ioctl(struct vfio_device *core_vdev, unsigned int cmd, unsigned long arg)
{
	struct vka_device *vka = to_vka(core_vdev);

	switch (cmd) {
	case VFIO_DEVICE_SET_IRQS:
		return vka_set_irqs(vka, arg);
	case VFIO_KEEPALIVE_ARM:
		return vka_arm(vka, (void __user *)arg);
	case VFIO_KEEPALIVE_DISARM:
		return vka_disarm(vka, (void __user *)arg);
	}
	return vfio_pci_core_ioctl(core_vdev, cmd, arg);
}

/* Unbind or unplug waits for the device's files: an armed keep gives them up. */
static void vka_request(struct vfio_device *core_vdev, unsigned int count)
{
	struct vka_device *vka = to_vka(core_vdev);

	mutex_lock(&vka->lock);
	if (vka->keep) {
		vka->release_unbind = true;
		/* from a worker: the unbinding task waits here, and its own fput would not run */
		mod_delayed_work(system_wq, &vka->release_work, 0);
	}
	mutex_unlock(&vka->lock);
	vfio_pci_core_request(core_vdev, count);
}

static int vka_init_dev(struct vfio_device *core_vdev)
{
	struct vka_device *vka = to_vka(core_vdev);
	int ret;

	vka->link = kzalloc(sizeof(*vka->link), GFP_KERNEL);
	if (!vka->link)
		return -ENOMEM;
	kref_init(&vka->link->kref);
	vka->link->vka = vka;
	mutex_init(&vka->lock);
	vka->irq_index = VKA_NO_IRQ;
	INIT_DELAYED_WORK(&vka->release_work, vka_release_work);
	INIT_LIST_HEAD(&vka->node);
	ret = vfio_pci_core_init_dev(core_vdev);
	if (ret)
		kfree(vka->link);
	return ret;
}

static void vka_release_dev(struct vfio_device *core_vdev)
{
	struct vka_device *vka = to_vka(core_vdev);

	mutex_lock(&vka_devices_lock);
	vka->link->vka = NULL;
	mutex_unlock(&vka_devices_lock);
	kref_put(&vka->link->kref, vka_link_free);
	vfio_pci_core_release_dev(core_vdev);
}

static const struct vfio_device_ops vka_ops = {
	.name		= "vfio-keepalive",
	.init		= vka_init_dev,
	.release	= vka_release_dev,
	.open_device	= vka_open_device,
	.close_device	= vka_close_device,
	.ioctl		= vka_ioctl,
	.device_feature	= vfio_pci_core_ioctl_feature,
	.read		= vfio_pci_core_read,
	.write		= vfio_pci_core_write,
	.mmap		= vfio_pci_core_mmap,
	.request	= vka_request,
	.match		= vfio_pci_core_match,
};

static int vka_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct vka_device *vka;
	int ret;

	vka = vfio_alloc_device(vka_device, core.vdev, &pdev->dev, &vka_ops);
	if (IS_ERR(vka))
		return PTR_ERR(vka);
	dev_set_drvdata(&pdev->dev, &vka->core);
	ret = vfio_pci_core_register_device(&vka->core);
	if (ret) {
		vfio_put_device(&vka->core.vdev);
		return ret;
	}
	mutex_lock(&vka_devices_lock);
	list_add(&vka->node, &vka_devices);
	mutex_unlock(&vka_devices_lock);
	return 0;
}

static void vka_remove(struct pci_dev *pdev)
{
	struct vfio_pci_core_device *core = dev_get_drvdata(&pdev->dev);
	struct vka_device *vka = container_of(core, struct vka_device, core);

	mutex_lock(&vka_devices_lock);
	list_del(&vka->node);
	mutex_unlock(&vka_devices_lock);
	/* waits for every file of the device, so the keep is gone (vka_request) */
	vfio_pci_core_unregister_device(core);
	cancel_delayed_work_sync(&vka->release_work);
	WARN_ON(vka->keep);
	vfio_put_device(&core->vdev);
}

static const struct pci_device_id vka_table[] = {
	{ PCI_DRIVER_OVERRIDE_DEVICE_VFIO(PCI_ANY_ID, PCI_ANY_ID) },
	{}
};
MODULE_DEVICE_TABLE(pci, vka_table);

static struct pci_driver vka_driver = {
	.name			= "vfio-keepalive",
	.id_table		= vka_table,
	.probe			= vka_probe,
	.remove			= vka_remove,
	.err_handler		= &vfio_pci_core_err_handlers,
	.driver_managed_dma	= true,
};

static int __init vka_init(void)
{
	int ret;

	ret = misc_register(&vka_misc);
	if (ret)
		return ret;
	ret = pci_register_driver(&vka_driver);
	if (ret)
		misc_deregister(&vka_misc);
	return ret;
}

static void __exit vka_exit(void)
{
	pci_unregister_driver(&vka_driver);
	misc_deregister(&vka_misc);
}

module_init(vka_init);
module_exit(vka_exit);

MODULE_DESCRIPTION("vfio-pci variant driver: devices keep DMA and interrupts across owners");
MODULE_AUTHOR("The kvm-live-upgrade authors");
MODULE_LICENSE("GPL");
