// SPDX-License-Identifier: GPL-2.0
/*
 * Statistics files (KVM_GET_STATS_FD) that follow their VM across moves.  KVM's file
 * holds the struct kvm it reports on, so a VMM's statistics file of the core's own
 * would report the old VM's last figures after a move, for ever, and keep the old core
 * from unloading.  kvm_thin gives the VMM a file of its own instead, which reads from a
 * statistics file of the core that runs the VM now:
 *
 *   - the header, the id string and the descriptors (everything before the header's
 *     data_offset) are those of the first core file, kept: a VMM reads them once and
 *     then reads data at the offsets they give;
 *   - the data comes from the current core's file.  A move's commit (the vCPUs stopped,
 *     so KVM_GET_STATS_FD does not wait for a vCPU's mutex) makes a statistics file on
 *     the new core for each of ours, and uses it only if its header and descriptors
 *     (not its id, which names the mover's pid) are the same as the first one's;
 *     otherwise the VM's figures stay the old core's, and the log says so.  The old
 *     core's file is closed with the old VM's, after the vCPUs run again.
 *
 * A read makes no call into the core but the read of its statistics file, and so never
 * waits for a vCPU, and holds no lock of the VM's while it copies to the VMM.  Counters
 * start again from 0 on the new core: they count what the new VM did.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/anon_inodes.h>
#include <linux/file.h>
#include <linux/kvm.h>
#include <linux/mman.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "thin.h"

struct klu_stats {
	struct list_head node;		/* klu_vm.stats, under files_lock */
	struct klu_file *kf;		/* the VM or vCPU it reports on */
	struct file *owner;		/* kf's file of ours: a reference, kf lives */
	spinlock_t lock;		/* core: a move swaps it, a read takes it */
	struct file *core;		/* the core's statistics file */
	struct kvm_stats_header hdr;
	u8 *head;			/* [0, hdr.data_offset) of the first core file */
};

/* The most of a header, an id and descriptors that kvm_thin keeps: KVM's are 1-10 KiB. */
#define KLU_STATS_HEAD_MAX	(64 << 10)

static const struct file_operations klu_stats_fops;

/*
 * Is @file a statistics file of @vm's core?  Its fd number came from the core, but the
 * VMM's other threads can put another file there first (dup2()), this one's own kind
 * included.
 */
static bool klu_stats_file_ok(struct klu_vm *vm, struct file *file)
{
	const char *name = file_dentry(file)->d_name.name;
	char mod[MODULE_NAME_LEN];

	if (file->f_op == &klu_stats_fops || !file->f_op->read || !file->private_data)
		return false;
	klu_module_name((unsigned long)file->f_op->read, mod, sizeof(mod));
	return !strcmp(mod, READ_ONCE(vm->core)->generic) &&
	       (!strcmp(name, "kvm-vm-stats") || !strncmp(name, "kvm-vcpu-stats:", 15));
}

/*
 * [0, @len) of the core statistics file @file into @buf, through @ubuf (user memory of
 * current->mm, @usize bytes): KVM's read copies to user memory only.
 */
static int klu_stats_head(struct file *file, u8 *buf, size_t len, void __user *ubuf,
			  size_t usize)
{
	size_t done = 0, n;
	loff_t pos = 0;
	ssize_t r;

	while (done < len) {
		n = min(len - done, usize);
		r = file->f_op->read(file, ubuf, n, &pos);
		if (r <= 0)
			return r ?: -EIO;
		if (copy_from_user(buf + done, ubuf, r))
			return -EFAULT;
		done += r;
	}
	return 0;
}

/* KVM_GET_STATS_FD on @core (a core VM or vCPU file): its statistics file, or ERR_PTR. */
static struct file *klu_stats_make(struct klu_vm *vm, struct file *core)
{
	struct file *file;
	long fd;

	fd = core->f_op->unlocked_ioctl(core, KVM_GET_STATS_FD, 0);
	if (fd < 0)
		return ERR_PTR(fd);
	file = klu_take_fd(fd);
	if (!file)
		return ERR_PTR(-EBADF);
	if (!klu_stats_file_ok(vm, file)) {
		fput(file);
		return ERR_PTR(-EBADF);
	}
	return file;
}

/* The header and descriptors of @file match what @st keeps (the id may differ). */
static int klu_stats_same(struct klu_stats *st, struct file *file, void __user *ubuf,
			  size_t usize)
{
	size_t len = st->hdr.data_offset;
	struct kvm_stats_header *h;
	u8 *buf = kvmalloc(len, GFP_KERNEL_ACCOUNT);
	int r;

	if (!buf)
		return -ENOMEM;
	r = klu_stats_head(file, buf, len, ubuf, usize);
	h = (void *)buf;
	if (!r && (memcmp(h, &st->hdr, sizeof(*h)) ||
		   memcmp(buf + h->desc_offset, st->head + h->desc_offset,
			  len - h->desc_offset)))
		r = -EPROTO;
	kvfree(buf);
	return r;
}

static ssize_t klu_stats_read(struct file *filp, char __user *ubuf, size_t size,
			      loff_t *ppos)
{
	struct klu_stats *st = filp->private_data;
	size_t head = st->hdr.data_offset, n = 0;
	loff_t pos = *ppos;
	struct file *core;
	ssize_t r = 0;

	if (pos < 0)
		return -EINVAL;
	/*
	 * No lock of the VM's is held over the VMM's memory: a read just after a move may
	 * still read the old core's file, which a reference keeps.
	 */
	spin_lock(&st->lock);
	core = get_file(st->core);
	spin_unlock(&st->lock);
	if (pos < head) {
		n = min_t(size_t, size, head - pos);
		if (copy_to_user(ubuf, st->head + pos, n))
			r = -EFAULT;
	}
	if (!r && n < size) {
		loff_t p = pos + n;

		r = core->f_op->read(core, ubuf + n, size - n, &p);
	}
	fput(core);
	if (r < 0)
		return r;
	*ppos = pos + n + r;
	return n + r;
}

static int klu_stats_release(struct inode *inode, struct file *filp)
{
	struct klu_stats *st = filp->private_data;
	struct klu_vm *vm = st->kf->vm;

	mutex_lock(&vm->files_lock);
	list_del(&st->node);
	mutex_unlock(&vm->files_lock);
	fput(st->core);
	kvfree(st->head);
	fput(st->owner);	/* last: it holds kf, and kf the VM */
	kfree(st);
	return 0;
}

static const struct file_operations klu_stats_fops = {
	.owner = THIS_MODULE,
	.read = klu_stats_read,
	.release = klu_stats_release,
	.llseek = noop_llseek,
};

/*
 * KVM_GET_STATS_FD on our file @filp (of @kf) returned the core's statistics file at
 * @fd: stand in for it.  Called with vm->lock held (read) in the VMM's context.  Our
 * file's fd, or -errno (the core's file closed).
 */
long klu_stats_wrap(struct klu_file *kf, struct file *filp, int fd)
{
	struct klu_vm *vm = kf->vm;
	struct klu_stats *st;
	struct file *core, *file;
	unsigned long map;
	int r;

	core = klu_take_fd(fd);
	if (!core)
		return -EBADF;
	r = -EBADF;
	if (!klu_stats_file_ok(vm, core))
		goto out_core;
	r = -ENOMEM;
	st = kzalloc(sizeof(*st), GFP_KERNEL_ACCOUNT);
	if (!st)
		goto out_core;
	spin_lock_init(&st->lock);
	st->kf = kf;
	st->core = core;
	map = vm_mmap(NULL, 0, PAGE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, 0);
	if (IS_ERR_VALUE(map)) {
		r = (long)map;
		goto out_st;
	}
	r = klu_stats_head(core, (u8 *)&st->hdr, sizeof(st->hdr), (void __user *)map,
			   PAGE_SIZE);
	if (!r && (st->hdr.data_offset < sizeof(st->hdr) ||
		   st->hdr.data_offset > KLU_STATS_HEAD_MAX ||
		   st->hdr.desc_offset > st->hdr.data_offset))
		r = -EPROTO;
	if (!r) {
		st->head = kvmalloc(st->hdr.data_offset, GFP_KERNEL_ACCOUNT);
		r = st->head ? klu_stats_head(core, st->head, st->hdr.data_offset,
					      (void __user *)map, PAGE_SIZE) : -ENOMEM;
	}
	vm_munmap(map, PAGE_SIZE);
	if (r)
		goto out_st;
	st->owner = get_file(filp);
	file = anon_inode_getfile(file_dentry(core)->d_name.name, &klu_stats_fops, st,
				  O_RDONLY);
	if (IS_ERR(file)) {
		r = PTR_ERR(file);
		fput(st->owner);
		goto out_st;
	}
	file->f_mode |= FMODE_PREAD;
	mutex_lock(&vm->files_lock);
	list_add_tail(&st->node, &vm->stats);
	mutex_unlock(&vm->files_lock);
	r = get_unused_fd_flags(O_CLOEXEC);
	if (r < 0) {
		fput(file);	/* klu_stats_release() frees the rest */
		return r;
	}
	fd_install(r, file);
	return r;
out_st:
	kvfree(st->head);
	kfree(st);
out_core:
	fput(core);
	return r;
}

/*
 * A move's commit, its files switched to the new core's (vm->lock written, files_lock
 * held, the vCPUs stopped): each statistics file follows its VM or vCPU there.  The old
 * core's files go to @graves, closed with the old VM.  @ubuf: the mover's scratch.
 */
void klu_stats_moved(struct klu_vm *vm, void __user *ubuf, size_t usize,
		     struct list_head *graves)
{
	struct klu_stats *st;
	struct klu_grave *g;
	struct file *file;
	int r;

	lockdep_assert_held(&vm->files_lock);
	list_for_each_entry(st, &vm->stats, node) {
		file = klu_stats_make(vm, st->kf->core);
		r = IS_ERR(file) ? PTR_ERR(file) : klu_stats_same(st, file, ubuf, usize);
		if (r) {
			if (!IS_ERR(file))
				fput(file);	/* not the last reference of its VM */
			pr_warn_ratelimited("VM %lu: no statistics file of core %s laid out as the first (%d): one goes on reporting the old core's figures\n",
					    vm->id, vm->core->tag, r);
			continue;
		}
		g = kzalloc(sizeof(*g), GFP_KERNEL | __GFP_NOFAIL);
		spin_lock(&st->lock);
		g->file = st->core;
		st->core = file;
		spin_unlock(&st->lock);
		list_add_tail(&g->node, graves);
	}
}
