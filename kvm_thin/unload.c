// SPDX-License-Identifier: GPL-2.0
/*
 * A refused rmmod of one of our modules says why in the kernel log.
 *
 * The module loader refuses to unload a core set that still has VMs (its modules are
 * in use), the generic module of a set whose vendor module is loaded, and kvm_thin while
 * any core is loaded (they link against it), with EWOULDBLOCK or EBUSY, and writes
 * nothing to the log.  kvm_thin watches delete_module() with a kretprobe: when the
 * loader refuses a module whose name is one of ours, a work item logs the reason, with
 * what is still there.  The kretprobe only reads the name and the result; it changes
 * nothing.  Without kprobes the refusals are still refused, just not explained.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kprobes.h>
#include <linux/ptrace.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include "thin.h"

struct klu_rmmod {
	char name[MODULE_NAME_LEN];
};

/* The last refusal to explain; one at a time is plenty for rmmod. */
static DEFINE_SPINLOCK(klu_refused_lock);
static char klu_refused_name[MODULE_NAME_LEN];
static long klu_refused_err;

static bool klu_our_module(const char *name)
{
	return !strcmp(name, KBUILD_MODNAME) || !strncmp(name, "kvm_core_", 9) ||
	       !strncmp(name, "kvm_intel_core_", 15) || !strncmp(name, "kvm_amd_core_", 13);
}

static void klu_explain(struct work_struct *work)
{
	char name[MODULE_NAME_LEN], vendor[MODULE_NAME_LEN] = "", tag[KLU_TAG_MAX] = "";
	char cores[64] = "";
	struct klu_core *core;
	int vms = 0, vcpus = 0, n = 0;
	bool generic = false;
	long err;

	spin_lock(&klu_refused_lock);
	strscpy(name, klu_refused_name, sizeof(name));
	err = klu_refused_err;
	klu_refused_name[0] = '\0';
	spin_unlock(&klu_refused_lock);
	if (!name[0])
		return;

	mutex_lock(&klu_cores_lock);
	list_for_each_entry(core, &klu_cores, node) {
		n += scnprintf(cores + n, sizeof(cores) - n, "%s%s", n ? " " : "", core->tag);
		if (!strcmp(name, core->generic) || !strcmp(name, core->vendor->name)) {
			strscpy(tag, core->tag, sizeof(tag));
			strscpy(vendor, core->vendor->name, sizeof(vendor));
			generic = !strcmp(name, core->generic);
		}
	}
	mutex_unlock(&klu_cores_lock);

	if (!strcmp(name, KBUILD_MODNAME)) {
		pr_warn("rmmod %s refused (%ld): core(s) %s still loaded; unload them first\n",
			name, err, cores);
		return;
	}
	if (!tag[0])
		return;
	klu_vms_count(tag, &vms, &vcpus);
	if (vms)
		pr_warn("rmmod %s refused (%ld): core %s still has %d VM(s) with %d vCPU(s); move them to another core or end them first\n",
			name, err, tag, vms, vcpus);
	else if (generic)
		pr_warn("rmmod %s refused (%ld): %s of core %s is loaded; unload it first\n",
			name, err, vendor, tag);
	else
		pr_warn("rmmod %s refused (%ld): core %s is in use (an open /dev/kvm, or a VM that is ending)\n",
			name, err, tag);
}

static DECLARE_WORK(klu_explain_work, klu_explain);

/* delete_module(name, flags): keep the name if it is one of ours. */
static int klu_rmmod_entry(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	/* __x64_sys_delete_module(regs): the system call's registers are its argument. */
	const struct pt_regs *args = (const struct pt_regs *)regs->di;
	const char __user *uname = (const char __user *)args->di;
	struct klu_rmmod *d = (void *)ri->data;

	size_t len = min_t(size_t, sizeof(d->name) - 1, PAGE_SIZE - offset_in_page(uname));

	/* No faults here (6.1 exports no strncpy_from_user_nofault()): page by page. */
	memset(d->name, 0, sizeof(d->name));
	if (copy_from_user_nofault(d->name, uname, len))
		return 1;
	if (!memchr(d->name, '\0', len) && len < sizeof(d->name) - 1 &&
	    copy_from_user_nofault(d->name + len, uname + len, sizeof(d->name) - 1 - len))
		return 1;
	return klu_our_module(d->name) ? 0 : 1;
}

static int klu_rmmod_ret(struct kretprobe_instance *ri, struct pt_regs *regs)
{
	struct klu_rmmod *d = (void *)ri->data;
	long err = regs_return_value(regs);

	if (err != -EWOULDBLOCK && err != -EBUSY)
		return 0;
	spin_lock(&klu_refused_lock);
	strscpy(klu_refused_name, d->name, sizeof(klu_refused_name));
	klu_refused_err = err;
	spin_unlock(&klu_refused_lock);
	schedule_work(&klu_explain_work);
	return 0;
}

static struct kretprobe klu_rmmod_probe = {
	.kp.symbol_name = "__x64_sys_delete_module",
	.entry_handler = klu_rmmod_entry,
	.handler = klu_rmmod_ret,
	.data_size = sizeof(struct klu_rmmod),
	.maxactive = 4,
};

static bool klu_rmmod_watched;

void klu_unload_init(void)
{
	int r = register_kretprobe(&klu_rmmod_probe);

	if (r) {
		pr_info("cannot watch delete_module() (%d): a refused rmmod of a core will not be explained in the log\n",
			r);
		return;
	}
	klu_rmmod_watched = true;
}

void klu_unload_exit(void)
{
	if (klu_rmmod_watched)
		unregister_kretprobe(&klu_rmmod_probe);
	cancel_work_sync(&klu_explain_work);
}
