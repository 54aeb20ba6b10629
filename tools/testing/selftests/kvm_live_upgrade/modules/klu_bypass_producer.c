// SPDX-License-Identifier: GPL-2.0
/*
 * Synthetic irq-bypass producers for the vm_bypass selftest: they stand where a VFIO
 * MSI vector would, so that a test can watch what irqbypass.ko does to a producer
 * (and what it does not) while kvm_thin moves the irqfd's VM between cores.
 *
 * Interface: /dev/klu_bypass_producer, mode 0600.  Each open file has its own
 * producers (up to KLU_BP_MAX) and its own log; closing it unregisters them all (the
 * module cannot be unloaded while a file is open).  KLU_BP_ADD and KLU_BP_DEL are
 * defined below; a test defines them alike.
 *
 *   ioctl(fd, KLU_BP_ADD, &(struct klu_bp_add){ .fd = efd, .irq = 0 })
 *	registers a producer whose token is the eventfd_ctx of the eventfd @efd (the
 *	token of the irqfd KVM made on that eventfd, if any), with host irq @irq;
 *	returns the producer's id (0 to KLU_BP_MAX - 1).  EBADF/EINVAL: @efd is no
 *	eventfd; ENOSPC: no free id; EBUSY: the token has a producer already; or what
 *	the consumer's add_producer returned.
 *   ioctl(fd, KLU_BP_DEL, id)
 *	unregisters producer @id (disconnecting it first if it is connected) and puts
 *	its eventfd_ctx.  EINVAL: no such producer.
 *   read(fd, ...)
 *	the callbacks irqbypass.ko made on this file's producers since the last read,
 *	oldest first, one line each: "<seq> <id> <op>\n", op one of add_consumer,
 *	del_consumer, stop, start.  Only whole lines are returned (EINVAL if not even
 *	one fits); 0 means nothing new.  seq counts from 0 per file; the log holds
 *	KLU_BP_LOG unread events, and a gap in seq means later ones were dropped.
 * The kernel log gets a line for each producer added or removed, and for each
 * add_consumer and del_consumer.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/eventfd.h>
#include <linux/fs.h>
#include <linux/irqbypass.h>
#include <linux/kfifo.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>

#define KLU_BP_MAX	16
#define KLU_BP_LOG	256

struct klu_bp_add {
	__s32 fd;
	__s32 irq;
};

#define KLU_BP_ADD	_IOW(0xbb, 1, struct klu_bp_add)
#define KLU_BP_DEL	_IO(0xbb, 2)

enum klu_bp_op { KLU_BP_ADD_CONSUMER, KLU_BP_DEL_CONSUMER, KLU_BP_STOP, KLU_BP_START };

static const char * const klu_bp_op_names[] = {
	[KLU_BP_ADD_CONSUMER] = "add_consumer",
	[KLU_BP_DEL_CONSUMER] = "del_consumer",
	[KLU_BP_STOP] = "stop",
	[KLU_BP_START] = "start",
};

struct klu_bp_event {
	u32 seq;
	u16 id;
	u16 op;
};

struct klu_bp_file {
	struct mutex lock;		/* prods[]; and the one reader of log */
	struct klu_bp_prod *prods[KLU_BP_MAX];
	spinlock_t log_lock;		/* seq; and the writers of log */
	u32 seq;
	DECLARE_KFIFO(log, struct klu_bp_event, KLU_BP_LOG);
};

struct klu_bp_prod {
	struct irq_bypass_producer prod;
	struct eventfd_ctx *ctx;
	struct klu_bp_file *file;
	int id;
};

/* irqbypass.ko calls the producer's callbacks in process context, under its mutex. */
static void klu_bp_log(struct irq_bypass_producer *prod, enum klu_bp_op op)
{
	struct klu_bp_prod *p = container_of(prod, struct klu_bp_prod, prod);
	struct klu_bp_event ev = { .id = p->id, .op = op };
	struct klu_bp_file *bf = p->file;

	spin_lock(&bf->log_lock);
	ev.seq = bf->seq++;
	kfifo_put(&bf->log, ev);	/* full: dropped, seen as a gap in seq */
	spin_unlock(&bf->log_lock);
	if (op == KLU_BP_ADD_CONSUMER || op == KLU_BP_DEL_CONSUMER)
		pr_info("producer %d: %s\n", p->id, klu_bp_op_names[op]);
}

static int klu_bp_add_consumer(struct irq_bypass_producer *prod,
			       struct irq_bypass_consumer *cons)
{
	klu_bp_log(prod, KLU_BP_ADD_CONSUMER);
	return 0;
}

static void klu_bp_del_consumer(struct irq_bypass_producer *prod,
				struct irq_bypass_consumer *cons)
{
	klu_bp_log(prod, KLU_BP_DEL_CONSUMER);
}

static void klu_bp_stop(struct irq_bypass_producer *prod)
{
	klu_bp_log(prod, KLU_BP_STOP);
}

static void klu_bp_start(struct irq_bypass_producer *prod)
{
	klu_bp_log(prod, KLU_BP_START);
}

static long klu_bp_add(struct klu_bp_file *bf, struct klu_bp_add __user *uarg)
{
	struct klu_bp_prod *p;
	struct klu_bp_add arg;
	int id, ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	for (id = 0; id < KLU_BP_MAX && bf->prods[id]; id++)
		;
	if (id == KLU_BP_MAX)
		return -ENOSPC;
	p = kzalloc(sizeof(*p), GFP_KERNEL);
	if (!p)
		return -ENOMEM;
	p->ctx = eventfd_ctx_fdget(arg.fd);
	if (IS_ERR(p->ctx)) {
		ret = PTR_ERR(p->ctx);
		kfree(p);
		return ret;
	}
	p->file = bf;
	p->id = id;
	p->prod = (struct irq_bypass_producer) {
		.token = p->ctx,
		.irq = arg.irq,
		.add_consumer = klu_bp_add_consumer,
		.del_consumer = klu_bp_del_consumer,
		.stop = klu_bp_stop,
		.start = klu_bp_start,
	};
	ret = irq_bypass_register_producer(&p->prod);
	if (ret) {
		pr_info("producer on eventfd %d: registration failed: %d\n", arg.fd, ret);
		eventfd_ctx_put(p->ctx);
		kfree(p);
		return ret;
	}
	bf->prods[id] = p;
	pr_info("producer %d: registered, eventfd %d, irq %d\n", id, arg.fd, arg.irq);
	return id;
}

static void klu_bp_del(struct klu_bp_file *bf, int id)
{
	struct klu_bp_prod *p = bf->prods[id];

	irq_bypass_unregister_producer(&p->prod);
	eventfd_ctx_put(p->ctx);
	kfree(p);
	bf->prods[id] = NULL;
	pr_info("producer %d: unregistered\n", id);
}

static long klu_bp_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct klu_bp_file *bf = f->private_data;
	long ret;

	mutex_lock(&bf->lock);
	switch (cmd) {
	case KLU_BP_ADD:
		ret = klu_bp_add(bf, (struct klu_bp_add __user *)arg);
		break;
	case KLU_BP_DEL:
		ret = -EINVAL;
		if (arg < KLU_BP_MAX && bf->prods[arg]) {
			klu_bp_del(bf, arg);
			ret = 0;
		}
		break;
	default:
		ret = -ENOTTY;
	}
	mutex_unlock(&bf->lock);
	return ret;
}

static ssize_t klu_bp_read(struct file *f, char __user *buf, size_t len, loff_t *pos)
{
	struct klu_bp_file *bf = f->private_data;
	struct klu_bp_event ev;
	ssize_t done = 0;
	char line[48];
	size_t n;

	/* Many writers (under log_lock), one reader (under lock): kfifo's rule. */
	mutex_lock(&bf->lock);
	while (kfifo_peek(&bf->log, &ev)) {
		n = scnprintf(line, sizeof(line), "%u %u %s\n", ev.seq, ev.id,
			      klu_bp_op_names[ev.op]);
		if (done + n > len)
			break;
		if (copy_to_user(buf + done, line, n)) {
			mutex_unlock(&bf->lock);
			return done ? done : -EFAULT;
		}
		kfifo_skip(&bf->log);
		done += n;
	}
	if (!done && !kfifo_is_empty(&bf->log))
		done = -EINVAL;	/* @len is shorter than the oldest line */
	mutex_unlock(&bf->lock);
	return done;
}

static int klu_bp_open(struct inode *inode, struct file *f)
{
	struct klu_bp_file *bf = kzalloc(sizeof(*bf), GFP_KERNEL);

	if (!bf)
		return -ENOMEM;
	mutex_init(&bf->lock);
	spin_lock_init(&bf->log_lock);
	INIT_KFIFO(bf->log);
	f->private_data = bf;
	return stream_open(inode, f);
}

static int klu_bp_release(struct inode *inode, struct file *f)
{
	struct klu_bp_file *bf = f->private_data;
	int id;

	for (id = 0; id < KLU_BP_MAX; id++)
		if (bf->prods[id])
			klu_bp_del(bf, id);
	mutex_destroy(&bf->lock);
	kfree(bf);
	return 0;
}

static const struct file_operations klu_bp_fops = {
	.owner = THIS_MODULE,
	.open = klu_bp_open,
	.release = klu_bp_release,
	.read = klu_bp_read,
	.unlocked_ioctl = klu_bp_ioctl,
	.llseek = no_llseek,
};

static struct miscdevice klu_bp_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "klu_bypass_producer",
	.fops = &klu_bp_fops,
	.mode = 0600,
};

module_misc_device(klu_bp_dev);
MODULE_DESCRIPTION("Synthetic irq-bypass producers for the kvm_live_upgrade selftests");
MODULE_LICENSE("GPL");
