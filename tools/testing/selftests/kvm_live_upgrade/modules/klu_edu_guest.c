// SPDX-License-Identifier: GPL-2.0
/*
 * klu_edu_guest: a driver for QEMU's edu device (1234:11e8) that runs inside the real
 * Linux guest of the realpt suite, where the unmodified QEMU passes an edu of the test
 * bed through to the guest (-device vfio-pci).  While it is loaded, a thread keeps the
 * device busy, one step at a time, each step ending in one MSI:
 *
 *   raise  an interrupt through edu's raise register;
 *   dma    2 KiB of this round's pattern from guest RAM into edu's buffer, and then
 *          from there into a second buffer in guest RAM, which must equal the first.
 *
 * The handler acknowledges the status bits it finds.  An MSI with no status bit to
 * acknowledge is one too many; a step whose MSI has not come after 60 s (a hang guard:
 * a step takes some 100 ms of the guest's time) is a lost one.  Each error is a
 * pr_err() line.  The "stats" parameter reads
 *   edu_rounds=R edu_msis=M edu_expected=X edu_errors=E
 * where X is the number of steps started: every MSI came exactly once if M == X and
 * E == 0.  Writing 1 to the "stop" parameter ends the run after the round in progress,
 * so that the figures are final; unloading does the same.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/wait.h>

#include "klu_edu_regs.h"

#define EDU_VENDOR	0x1234
#define EDU_DEVICE	0x11e8

/*
 * edu's buffer is 4 KiB, but QEMU 7.2's range check takes a DMA that ends at its end
 * for out of bounds, and its answer is a hw_error() that ends the emulator.
 */
#define KLU_EDU_LEN	2048
#define KLU_EDU_WAIT	(60 * HZ)

struct klu_edu_guest {
	struct pci_dev *pdev;
	void __iomem *bar;
	struct task_struct *thread;	/* under klu_edu_lock */
	wait_queue_head_t wait;
	u32 *buf[2];
	dma_addr_t dma[2];
};

/* The figures outlive the device, so that "stats" can always be read. */
static atomic_t klu_rounds, klu_msis, klu_expected, klu_errors;
static atomic_t klu_seen_raise, klu_seen_dma;	/* status bits acknowledged */
static DEFINE_MUTEX(klu_edu_lock);		/* the one device's thread */
static struct klu_edu_guest *klu_edu;

static irqreturn_t klu_edu_irq(int irq, void *data)
{
	struct klu_edu_guest *e = data;
	u32 st = readl(e->bar + EDU_IRQ_STATUS);

	atomic_inc(&klu_msis);
	if (!st) {
		atomic_inc(&klu_errors);
		pr_err("an MSI with no status bit set: one too many\n");
		return IRQ_HANDLED;
	}
	writel(st, e->bar + EDU_IRQ_ACK);
	if (st & EDU_STATUS_RAISE)
		atomic_inc(&klu_seen_raise);
	if (st & EDU_STATUS_DMA)
		atomic_inc(&klu_seen_dma);
	if (st & ~(EDU_STATUS_RAISE | EDU_STATUS_DMA)) {
		atomic_inc(&klu_errors);
		pr_err("unexpected status bits %#x\n", st);
	}
	wake_up(&e->wait);
	return IRQ_HANDLED;
}

/* Wait for the MSI of the step just started: @seen must reach @want. */
static void klu_edu_wait(struct klu_edu_guest *e, atomic_t *seen, int want, u32 bit,
			 unsigned int round, const char *what)
{
	u32 st;

	if (wait_event_timeout(e->wait, atomic_read(seen) >= want, KLU_EDU_WAIT)) {
		if (atomic_read(seen) > want) {
			atomic_inc(&klu_errors);
			pr_err("round %u: %s: status bit %#x acknowledged twice\n",
			       round, what, bit);
		}
		return;
	}
	st = readl(e->bar + EDU_IRQ_STATUS);
	atomic_inc(&klu_errors);
	pr_err("round %u: %s: no MSI in 60 s (status %#x): lost\n", round, what, st);
	/* Acknowledge it here, so that the next step starts clean. */
	if (st & bit) {
		writel(bit, e->bar + EDU_IRQ_ACK);
		atomic_inc(seen);
	}
}

static void klu_edu_dma(struct klu_edu_guest *e, u64 src, u64 dst, u32 cmd,
			unsigned int round, const char *what)
{
	int want = atomic_read(&klu_seen_dma) + 1;

	if (readl(e->bar + EDU_DMA_CMD) & EDU_DMA_RUN) {
		atomic_inc(&klu_errors);
		pr_err("round %u: %s: a DMA still runs\n", round, what);
		return;
	}
	writeq(src, e->bar + EDU_DMA_SRC);
	writeq(dst, e->bar + EDU_DMA_DST);
	writeq(KLU_EDU_LEN, e->bar + EDU_DMA_CNT);
	atomic_inc(&klu_expected);
	writeq(cmd | EDU_DMA_RUN | EDU_DMA_IRQ, e->bar + EDU_DMA_CMD);
	klu_edu_wait(e, &klu_seen_dma, want, EDU_STATUS_DMA, round, what);
}

static void klu_edu_round(struct klu_edu_guest *e, unsigned int round)
{
	unsigned int i, n = KLU_EDU_LEN / sizeof(u32);
	int want = atomic_read(&klu_seen_raise) + 1;

	atomic_inc(&klu_expected);
	writel(EDU_STATUS_RAISE, e->bar + EDU_IRQ_RAISE);
	klu_edu_wait(e, &klu_seen_raise, want, EDU_STATUS_RAISE, round, "raise");

	for (i = 0; i < n; i++) {
		e->buf[0][i] = (round * 0x9e3779b9u) ^ (i * 0x85ebca6bu);
		e->buf[1][i] = ~e->buf[0][i];
	}
	klu_edu_dma(e, e->dma[0], EDU_BUF, 0, round, "dma to edu");
	klu_edu_dma(e, EDU_BUF, e->dma[1], EDU_DMA_TO_RAM, round, "dma from edu");
	for (i = 0; i < n; i++) {
		if (e->buf[1][i] != e->buf[0][i]) {
			atomic_inc(&klu_errors);
			pr_err("round %u: word %u came back as %#x, not %#x\n",
			       round, i, e->buf[1][i], e->buf[0][i]);
			break;
		}
	}
}

static int klu_edu_thread(void *data)
{
	struct klu_edu_guest *e = data;
	unsigned int round = 0;

	while (!kthread_should_stop()) {
		klu_edu_round(e, round++);
		atomic_set(&klu_rounds, round);
		cond_resched();
	}
	return 0;
}

/* Under klu_edu_lock. */
static void klu_edu_stop_locked(void)
{
	if (klu_edu && klu_edu->thread) {
		kthread_stop(klu_edu->thread);
		klu_edu->thread = NULL;
	}
}

static int klu_edu_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct klu_edu_guest *e;
	struct task_struct *t;
	u32 ident;
	int r, i;

	if (klu_edu)
		return -EBUSY;	/* one device is enough */
	e = devm_kzalloc(&pdev->dev, sizeof(*e), GFP_KERNEL);
	if (!e)
		return -ENOMEM;
	e->pdev = pdev;
	init_waitqueue_head(&e->wait);
	r = pcim_enable_device(pdev);
	if (r)
		return r;
	r = pcim_iomap_regions(pdev, BIT(0), KBUILD_MODNAME);
	if (r)
		return r;
	e->bar = pcim_iomap_table(pdev)[0];
	ident = readl(e->bar + EDU_ID);
	writel(0x12345678, e->bar + EDU_LIVENESS);
	if ((ident & 0xff) != 0xed || readl(e->bar + EDU_LIVENESS) != ~0x12345678u) {
		dev_err(&pdev->dev, "not an edu that answers: id %#x\n", ident);
		return -ENODEV;
	}
	r = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(EDU_DMA_BITS));
	if (r)
		return r;
	for (i = 0; i < 2; i++) {
		e->buf[i] = dmam_alloc_coherent(&pdev->dev, PAGE_SIZE, &e->dma[i],
						GFP_KERNEL);
		if (!e->buf[i])
			return -ENOMEM;
	}
	pci_set_master(pdev);
	r = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSI);
	if (r < 0) {
		dev_err(&pdev->dev, "no MSI: %d\n", r);
		return r;
	}
	r = request_irq(pci_irq_vector(pdev, 0), klu_edu_irq, 0, KBUILD_MODNAME, e);
	if (r)
		goto free_vectors;
	pci_set_drvdata(pdev, e);
	t = kthread_run(klu_edu_thread, e, "klu-edu");
	if (IS_ERR(t)) {
		r = PTR_ERR(t);
		goto free_irq;
	}
	mutex_lock(&klu_edu_lock);
	e->thread = t;
	klu_edu = e;
	mutex_unlock(&klu_edu_lock);
	dev_info(&pdev->dev, "edu %#x, MSI %d, DMA at %pad and %pad\n", ident,
		 pci_irq_vector(pdev, 0), &e->dma[0], &e->dma[1]);
	return 0;

free_irq:
	free_irq(pci_irq_vector(pdev, 0), e);
free_vectors:
	pci_free_irq_vectors(pdev);
	return r;
}

static void klu_edu_remove(struct pci_dev *pdev)
{
	struct klu_edu_guest *e = pci_get_drvdata(pdev);

	mutex_lock(&klu_edu_lock);
	klu_edu_stop_locked();
	klu_edu = NULL;
	mutex_unlock(&klu_edu_lock);
	free_irq(pci_irq_vector(pdev, 0), e);
	pci_free_irq_vectors(pdev);
	pci_clear_master(pdev);
}

static const struct pci_device_id klu_edu_ids[] = {
	{ PCI_DEVICE(EDU_VENDOR, EDU_DEVICE) },
	{ }
};
MODULE_DEVICE_TABLE(pci, klu_edu_ids);

static struct pci_driver klu_edu_driver = {
	.name = KBUILD_MODNAME,
	.id_table = klu_edu_ids,
	.probe = klu_edu_probe,
	.remove = klu_edu_remove,
};

static int klu_edu_stats_get(char *buf, const struct kernel_param *kp)
{
	return sysfs_emit(buf, "edu_rounds=%d edu_msis=%d edu_expected=%d edu_errors=%d\n",
			  atomic_read(&klu_rounds), atomic_read(&klu_msis),
			  atomic_read(&klu_expected), atomic_read(&klu_errors));
}

static const struct kernel_param_ops klu_edu_stats_ops = {
	.get = klu_edu_stats_get,
};
module_param_cb(stats, &klu_edu_stats_ops, NULL, 0444);
MODULE_PARM_DESC(stats, "rounds done, MSIs handled, steps started, errors");

static int klu_edu_stop_set(const char *val, const struct kernel_param *kp)
{
	bool stop;
	int r = kstrtobool(val, &stop);

	if (r)
		return r;
	if (!stop)
		return -EINVAL;
	mutex_lock(&klu_edu_lock);
	klu_edu_stop_locked();
	mutex_unlock(&klu_edu_lock);
	return 0;
}

static const struct kernel_param_ops klu_edu_stop_ops = {
	.set = klu_edu_stop_set,
};
module_param_cb(stop, &klu_edu_stop_ops, NULL, 0200);
MODULE_PARM_DESC(stop, "write 1: end the run after the round in progress");

module_pci_driver(klu_edu_driver);

MODULE_DESCRIPTION("Guest-side driver of QEMU's edu device for the realpt suite");
MODULE_AUTHOR("The kvm-live-upgrade authors");
MODULE_LICENSE("GPL");
