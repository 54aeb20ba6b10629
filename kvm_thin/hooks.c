// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel hooks that have one slot for all of KVM.  kvm_thin takes each slot once, at
 * load, and calls every core that registered with it:
 *
 *   CPU hotplug states CPUHP_AP_KVM_STARTING and CPUHP_AP_X86_KVM_CLK_ONLINE,
 *   perf's guest callbacks, the posted-interrupt wake-up handler, the emergency
 *   virtualisation-disable callback, the AMD IOMMU's GA-log notifier, and the "kvm"
 *   debugfs directory.
 *
 * Intel PT's VMX mode and the AMD PMU's virtualisation mode are per-CPU switches with no
 * count; kvm_thin counts them.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

/* amd-iommu.h uses ENODEV without errno.h (seen with CONFIG_AMD_IOMMU=n) */
#include <linux/errno.h>
#include <linux/amd-iommu.h>
#include <linux/cpu.h>
#include <linux/debugfs.h>
#include <linux/rculist.h>
#include <linux/slab.h>
#include <linux/smp.h>
#include <linux/workqueue.h>
#include <asm/irq.h>
#include <asm/perf_event.h>

#include "thin.h"

/* ---- CPU hotplug ------------------------------------------------------------------ */

struct klu_hp_cb {
	struct list_head node;
	char owner[MODULE_NAME_LEN];
	int (*startup)(unsigned int cpu);
	int (*teardown)(unsigned int cpu);
};

struct klu_hp_slot {
	enum cpuhp_state state;
	const char *name;
	bool taken;
	struct list_head cbs;	/* written under cpus_read_lock(), read by hotplug */
	int (*mux_startup)(unsigned int cpu);
	int (*mux_teardown)(unsigned int cpu);
};

static DEFINE_MUTEX(klu_hp_lock);

static int klu_hp_startup(struct klu_hp_slot *slot, unsigned int cpu)
{
	struct klu_hp_cb *cb;
	int r;

	list_for_each_entry(cb, &slot->cbs, node) {
		r = cb->startup ? cb->startup(cpu) : 0;
		if (r) {
			list_for_each_entry_continue_reverse(cb, &slot->cbs, node)
				if (cb->teardown)
					cb->teardown(cpu);
			return r;
		}
	}
	return 0;
}

static int klu_hp_teardown(struct klu_hp_slot *slot, unsigned int cpu)
{
	struct klu_hp_cb *cb;

	list_for_each_entry_reverse(cb, &slot->cbs, node)
		if (cb->teardown)
			cb->teardown(cpu);
	return 0;
}

static struct klu_hp_slot klu_hp_slots[2];

static int klu_hp0_startup(unsigned int cpu) { return klu_hp_startup(&klu_hp_slots[0], cpu); }
static int klu_hp0_teardown(unsigned int cpu) { return klu_hp_teardown(&klu_hp_slots[0], cpu); }
static int klu_hp1_startup(unsigned int cpu) { return klu_hp_startup(&klu_hp_slots[1], cpu); }
static int klu_hp1_teardown(unsigned int cpu) { return klu_hp_teardown(&klu_hp_slots[1], cpu); }

static struct klu_hp_slot klu_hp_slots[2] = {
	{ CPUHP_AP_KVM_STARTING, "kvm/cpu:starting", false, LIST_HEAD_INIT(klu_hp_slots[0].cbs),
	  klu_hp0_startup, klu_hp0_teardown },
	{ CPUHP_AP_X86_KVM_CLK_ONLINE, "x86/kvm/clk:online", false,
	  LIST_HEAD_INIT(klu_hp_slots[1].cbs), klu_hp1_startup, klu_hp1_teardown },
};

static struct klu_hp_slot *klu_hp_slot(enum cpuhp_state state)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(klu_hp_slots); i++)
		if (klu_hp_slots[i].state == state)
			return &klu_hp_slots[i];
	return NULL;
}

struct klu_hp_call {
	int (*fn)(unsigned int cpu);
	int ret;
};

static void klu_hp_call_here(void *arg)
{
	struct klu_hp_call *c = arg;

	c->ret = c->fn(smp_processor_id());
}

static long klu_hp_call_work(void *arg)
{
	klu_hp_call_here(arg);
	return 0;
}

/* Run a state callback on @cpu as hotplug would: IRQs off for STARTING states. */
static int klu_hp_run(enum cpuhp_state state, int (*fn)(unsigned int), unsigned int cpu)
{
	struct klu_hp_call c = { fn, 0 };

	if (!fn)
		return 0;
	if (state < CPUHP_AP_ONLINE)
		smp_call_function_single(cpu, klu_hp_call_here, &c, 1);
	else
		work_on_cpu(cpu, klu_hp_call_work, &c);
	return c.ret;
}

int KLU_THIN(cpuhp_setup_state)(enum cpuhp_state state, const char *name, bool invoke,
				int (*startup)(unsigned int cpu),
				int (*teardown)(unsigned int cpu), bool multi_instance)
{
	struct klu_hp_slot *slot = klu_hp_slot(state);
	struct klu_hp_cb *cb;
	unsigned int cpu, done;
	int r = 0;

	if (!slot)	/* not one of KVM's fixed slots: the kernel's own rules apply */
		return __cpuhp_setup_state(state, name, invoke, startup, teardown,
					   multi_instance);
	cb = kzalloc(sizeof(*cb), GFP_KERNEL);
	if (!cb)
		return -ENOMEM;
	cb->startup = startup;
	cb->teardown = teardown;
	klu_module_name((unsigned long)(startup ?: teardown), cb->owner, sizeof(cb->owner));

	mutex_lock(&klu_hp_lock);
	cpus_read_lock();
	if (invoke) {
		for_each_online_cpu(cpu) {
			r = klu_hp_run(state, startup, cpu);
			if (r)
				break;
		}
		if (r) {
			done = cpu;
			for_each_online_cpu(cpu) {
				if (cpu == done)
					break;
				klu_hp_run(state, teardown, cpu);
			}
			pr_err("CPU hotplug state %s: startup failed on CPU %u: %d\n",
			       name, done, r);
		}
	}
	if (!r)
		list_add_tail(&cb->node, &slot->cbs);
	cpus_read_unlock();
	mutex_unlock(&klu_hp_lock);
	if (r)
		kfree(cb);
	return r;
}
EXPORT_SYMBOL_GPL(KLU_THIN(cpuhp_setup_state));

void KLU_THIN(cpuhp_remove_state)(enum cpuhp_state state, bool invoke)
{
	struct klu_hp_slot *slot = klu_hp_slot(state);
	char mod[MODULE_NAME_LEN];
	struct klu_hp_cb *cb, *tmp;
	unsigned int cpu;

	if (!slot) {
		__cpuhp_remove_state(state, invoke);
		return;
	}
	klu_module_name((unsigned long)__builtin_return_address(0), mod, sizeof(mod));

	mutex_lock(&klu_hp_lock);
	cpus_read_lock();
	list_for_each_entry_safe(cb, tmp, &slot->cbs, node) {
		if (strcmp(cb->owner, mod))
			continue;
		if (invoke)
			for_each_online_cpu(cpu)
				klu_hp_run(state, cb->teardown, cpu);
		list_del(&cb->node);
		kfree(cb);
	}
	cpus_read_unlock();
	mutex_unlock(&klu_hp_lock);
}
EXPORT_SYMBOL_GPL(KLU_THIN(cpuhp_remove_state));

/* ---- perf guest callbacks --------------------------------------------------------- */

struct klu_perf_ent {
	struct list_head node;
	struct perf_guest_info_callbacks *cbs;
};

static LIST_HEAD(klu_perf_list);
static DEFINE_MUTEX(klu_perf_lock);

/* The core with a vCPU loaded on this CPU answers; the others report no guest. */
static struct perf_guest_info_callbacks *klu_perf_current(unsigned int *state)
{
	struct klu_perf_ent *e;

	list_for_each_entry_rcu(e, &klu_perf_list, node) {
		*state = e->cbs->state();
		if (*state)
			return e->cbs;
	}
	return NULL;
}

static unsigned int klu_perf_state(void)
{
	unsigned int state = 0;

	rcu_read_lock();
	klu_perf_current(&state);
	rcu_read_unlock();
	return state;
}

static unsigned long klu_perf_get_ip(void)
{
	struct perf_guest_info_callbacks *cbs;
	unsigned long ip = 0;
	unsigned int state;

	rcu_read_lock();
	cbs = klu_perf_current(&state);
	if (cbs)
		ip = cbs->get_ip();
	rcu_read_unlock();
	return ip;
}

static unsigned int klu_perf_intel_pt(void)
{
	struct klu_perf_ent *e;
	unsigned int r = 0;

	rcu_read_lock();
	list_for_each_entry_rcu(e, &klu_perf_list, node) {
		if (e->cbs->handle_intel_pt_intr && e->cbs->state()) {
			r = e->cbs->handle_intel_pt_intr();
			break;
		}
	}
	rcu_read_unlock();
	return r;
}

static struct perf_guest_info_callbacks klu_perf_cbs = {
	.state = klu_perf_state,
	.get_ip = klu_perf_get_ip,
	.handle_intel_pt_intr = klu_perf_intel_pt,
};

void KLU_THIN(perf_register_guest_info_callbacks)(struct perf_guest_info_callbacks *cbs)
{
	struct klu_perf_ent *e = kzalloc(sizeof(*e), GFP_KERNEL);

	if (!e)		/* kzalloc said so; perf will not see this core's guests */
		return;
	e->cbs = cbs;
	mutex_lock(&klu_perf_lock);
	list_add_tail_rcu(&e->node, &klu_perf_list);
	mutex_unlock(&klu_perf_lock);
}
EXPORT_SYMBOL_GPL(KLU_THIN(perf_register_guest_info_callbacks));

void KLU_THIN(perf_unregister_guest_info_callbacks)(struct perf_guest_info_callbacks *cbs)
{
	struct klu_perf_ent *e, *found = NULL;

	mutex_lock(&klu_perf_lock);
	list_for_each_entry(e, &klu_perf_list, node) {
		if (e->cbs == cbs) {
			list_del_rcu(&e->node);
			found = e;
			break;
		}
	}
	mutex_unlock(&klu_perf_lock);
	synchronize_rcu();
	kfree(found);
}
EXPORT_SYMBOL_GPL(KLU_THIN(perf_unregister_guest_info_callbacks));

/* ---- posted-interrupt wake-up and emergency disable (VMX) ------------------------- */

struct klu_fn_ent {
	struct list_head node;
	void *fn;
};

static LIST_HEAD(klu_pi_list);
static LIST_HEAD(klu_emergency_list);
static DEFINE_MUTEX(klu_fn_lock);

static void klu_fn_add(struct list_head *list, void *fn)
{
	struct klu_fn_ent *e = kzalloc(sizeof(*e), GFP_KERNEL);

	if (WARN_ON_ONCE(!e))
		return;
	e->fn = fn;
	mutex_lock(&klu_fn_lock);
	list_add_tail_rcu(&e->node, list);
	mutex_unlock(&klu_fn_lock);
}

/* Remove @fn, or with @fn NULL every entry of the module named @mod. */
static void klu_fn_del(struct list_head *list, void *fn, const char *mod)
{
	char owner[MODULE_NAME_LEN];
	struct klu_fn_ent *e, *tmp;
	LIST_HEAD(gone);

	mutex_lock(&klu_fn_lock);
	list_for_each_entry_safe(e, tmp, list, node) {
		if (!fn)
			klu_module_name((unsigned long)e->fn, owner, sizeof(owner));
		if (fn ? e->fn == fn : !strcmp(owner, mod)) {
			list_del_rcu(&e->node);
			/* Only we can see it once the grace period is over. */
			list_add(&e->node, &gone);
		}
	}
	mutex_unlock(&klu_fn_lock);
	synchronize_rcu();
	list_for_each_entry_safe(e, tmp, &gone, node)
		kfree(e);
}

static void klu_pi_wakeup(void)
{
	struct klu_fn_ent *e;

	rcu_read_lock();
	list_for_each_entry_rcu(e, &klu_pi_list, node)
		((void (*)(void))e->fn)();
	rcu_read_unlock();
}

void KLU_THIN(set_posted_intr_wakeup_handler)(void (*handler)(void))
{
	char mod[MODULE_NAME_LEN];

	if (handler) {
		klu_fn_add(&klu_pi_list, handler);
		return;
	}
	klu_module_name((unsigned long)__builtin_return_address(0), mod, sizeof(mod));
	klu_fn_del(&klu_pi_list, NULL, mod);
}
EXPORT_SYMBOL_GPL(KLU_THIN(set_posted_intr_wakeup_handler));

static void klu_emergency(void)
{
	struct klu_fn_ent *e;

	list_for_each_entry_rcu(e, &klu_emergency_list, node)
		((cpu_emergency_virt_cb *)e->fn)();
}

void KLU_THIN(emergency_register_virt_callback)(cpu_emergency_virt_cb *callback)
{
	klu_fn_add(&klu_emergency_list, callback);
}
EXPORT_SYMBOL_GPL(KLU_THIN(emergency_register_virt_callback));

void KLU_THIN(emergency_unregister_virt_callback)(cpu_emergency_virt_cb *callback)
{
	klu_fn_del(&klu_emergency_list, callback, NULL);
}
EXPORT_SYMBOL_GPL(KLU_THIN(emergency_unregister_virt_callback));

/* ---- counted per-CPU switches ------------------------------------------------------ */

static DEFINE_PER_CPU(int, klu_pt_vmx_refs);
static DEFINE_PER_CPU(int, klu_pmu_virt_refs);

void KLU_THIN(intel_pt_handle_vmx)(int on)
{
	if (on ? this_cpu_inc_return(klu_pt_vmx_refs) == 1 :
		 this_cpu_dec_return(klu_pt_vmx_refs) == 0)
		intel_pt_handle_vmx(on);
}
EXPORT_SYMBOL_GPL(KLU_THIN(intel_pt_handle_vmx));

void KLU_THIN(amd_pmu_enable_virt)(void)
{
	if (this_cpu_inc_return(klu_pmu_virt_refs) == 1)
		amd_pmu_enable_virt();
}
EXPORT_SYMBOL_GPL(KLU_THIN(amd_pmu_enable_virt));

void KLU_THIN(amd_pmu_disable_virt)(void)
{
	if (this_cpu_dec_return(klu_pmu_virt_refs) == 0)
		amd_pmu_disable_virt();
}
EXPORT_SYMBOL_GPL(KLU_THIN(amd_pmu_disable_virt));

/* ---- debugfs: <debugfs>/kvm is kvm_thin's, each core gets kvm/<tag> ---------------- */

static struct dentry *klu_debugfs;

struct dentry *KLU_THIN(debugfs_create_dir)(const char *name, struct dentry *parent)
{
	char mod[MODULE_NAME_LEN];

	if (parent || strcmp(name, "kvm"))
		return debugfs_create_dir(name, parent);
	klu_module_name((unsigned long)__builtin_return_address(0), mod, sizeof(mod));
	return debugfs_create_dir(mod[0] ? mod : "unknown", klu_debugfs);
}
EXPORT_SYMBOL_GPL(KLU_THIN(debugfs_create_dir));

/* ---- taking the slots ------------------------------------------------------------- */

/* ---- the AMD IOMMU's GA log: wake-ups of blocked AVIC vCPUs ------------------------ */

/*
 * The IOMMU has one notifier for its GA log, which an AVIC core sets in its hardware
 * setup and never clears.  kvm_thin sets its own and calls every core's: each looks the
 * VM id of the ga_tag up among its own VMs.  Two cores number their VMs apart, so one
 * id can name a VM on each; the other core's vCPU then gets a spurious wake-up, which
 * is harmless, where a missed one would leave a vCPU asleep with an interrupt pending.
 * A core's entry goes when its module does (klu_hooks_module_going()), as the core
 * does not clear it.
 */
static LIST_HEAD(klu_ga_list);

static int klu_ga_log(u32 ga_tag)
{
	struct klu_fn_ent *e;

	rcu_read_lock();
	list_for_each_entry_rcu(e, &klu_ga_list, node)
		((int (*)(u32))e->fn)(ga_tag);
	rcu_read_unlock();
	return 0;
}

int KLU_THIN(amd_iommu_register_ga_log_notifier)(int (*notifier)(u32 ga_tag))
{
	char mod[MODULE_NAME_LEN];

	if (notifier) {
		klu_fn_add(&klu_ga_list, notifier);
		return 0;
	}
	klu_module_name((unsigned long)__builtin_return_address(0), mod, sizeof(mod));
	klu_fn_del(&klu_ga_list, NULL, mod);
	return 0;
}
EXPORT_SYMBOL_GPL(KLU_THIN(amd_iommu_register_ga_log_notifier));

static int klu_hooks_module_going(struct notifier_block *nb, unsigned long state,
				  void *data)
{
	struct module *mod = data;

	if (state == MODULE_STATE_GOING && !strncmp(mod->name, "kvm_amd_core_", 13))
		klu_fn_del(&klu_ga_list, NULL, mod->name);
	return NOTIFY_DONE;
}

static struct notifier_block klu_module_nb = {
	.notifier_call = klu_hooks_module_going,
};

int klu_hooks_init(void)
{
	int i, r;

	for (i = 0; i < ARRAY_SIZE(klu_hp_slots); i++) {
		struct klu_hp_slot *s = &klu_hp_slots[i];

		r = cpuhp_setup_state_nocalls(s->state, s->name, s->mux_startup, s->mux_teardown);
		if (r) {
			pr_err("CPU hotplug state %s is taken (%d): is another KVM loaded?\n",
			       s->name, r);
			goto fail;
		}
		s->taken = true;
	}
	perf_register_guest_info_callbacks(&klu_perf_cbs);
	if (boot_cpu_has(X86_FEATURE_VMX)) {
		kvm_set_posted_intr_wakeup_handler(klu_pi_wakeup);
		cpu_emergency_register_virt_callback(klu_emergency);
	}
	if (boot_cpu_has(X86_FEATURE_SVM)) {
		r = register_module_notifier(&klu_module_nb);
		if (r) {
			perf_unregister_guest_info_callbacks(&klu_perf_cbs);
			goto fail;
		}
		amd_iommu_register_ga_log_notifier(klu_ga_log);
	}
	klu_debugfs = debugfs_create_dir("kvm", NULL);
	return 0;
fail:
	while (i--)
		cpuhp_remove_state_nocalls(klu_hp_slots[i].state);
	return r;
}

void klu_hooks_exit(void)
{
	int i;

	/* Every core removed what it added; anything left would call unloaded code. */
	for (i = 0; i < ARRAY_SIZE(klu_hp_slots); i++)
		WARN_ON(!list_empty(&klu_hp_slots[i].cbs));
	WARN_ON(!list_empty(&klu_perf_list));
	WARN_ON(!list_empty(&klu_pi_list));
	WARN_ON(!list_empty(&klu_emergency_list));
	WARN_ON(!list_empty(&klu_ga_list));

	debugfs_remove_recursive(klu_debugfs);
	if (boot_cpu_has(X86_FEATURE_SVM)) {
		amd_iommu_register_ga_log_notifier(NULL);	/* waits for a running one */
		unregister_module_notifier(&klu_module_nb);
	}
	if (boot_cpu_has(X86_FEATURE_VMX)) {
		cpu_emergency_unregister_virt_callback(klu_emergency);
		kvm_set_posted_intr_wakeup_handler(NULL);
	}
	perf_unregister_guest_info_callbacks(&klu_perf_cbs);
	for (i = 0; i < ARRAY_SIZE(klu_hp_slots); i++)
		if (klu_hp_slots[i].taken)
			cpuhp_remove_state_nocalls(klu_hp_slots[i].state);
}
