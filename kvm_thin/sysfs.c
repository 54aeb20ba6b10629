// SPDX-License-Identifier: GPL-2.0
/*
 * /sys/kernel/kvm_thin: which cores are loaded and which one new VMs go to.
 * Documentation/ABI/testing/sysfs-kernel-kvm_thin describes every file.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kobject.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#include "thin.h"

static struct kobject *klu_kobj;
static struct kset *klu_cores_kset;

static ssize_t active_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct klu_core *core;
	ssize_t n;

	mutex_lock(&klu_cores_lock);
	core = klu_core_active_locked();
	n = sysfs_emit(buf, "%s\n", core ? core->tag : "");
	mutex_unlock(&klu_cores_lock);
	return n;
}

static ssize_t active_store(struct kobject *kobj, struct kobj_attribute *attr,
			    const char *buf, size_t count)
{
	char tag[KLU_TAG_MAX];
	struct klu_core *core;

	if (count >= sizeof(tag)) {
		pr_err("active: '%.*s...' is longer than any core tag\n", (int)sizeof(tag), buf);
		return -EINVAL;
	}
	strscpy(tag, buf, sizeof(tag));
	strim(tag);
	mutex_lock(&klu_cores_lock);
	core = klu_core_by_tag(tag);
	if (core)
		klu_core_set_active(core);
	mutex_unlock(&klu_cores_lock);
	if (!core) {
		pr_err("active: no core with tag '%s' is loaded; see /sys/kernel/kvm_thin/cores\n",
		       tag);
		return -ENOENT;
	}
	return count;
}

static ssize_t abi_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", KLU_THIN_ABI);
}

static struct kobj_attribute active_attr = __ATTR_RW(active);
static struct kobj_attribute abi_attr = __ATTR_RO(abi);

static struct attribute *klu_attrs[] = {
	&active_attr.attr,
	&abi_attr.attr,
	&klu_irqbypass_attr.attr,
	NULL,
};

static const struct attribute_group klu_group = {
	.attrs = klu_attrs,
};

/* cores/<tag>/ */

#define to_core(k) container_of(k, struct klu_core, kobj)

static ssize_t kvm_version_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%s\n", to_core(kobj)->vendor->version ?: "");
}

static ssize_t modules_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct klu_core *core = to_core(kobj);

	return sysfs_emit(buf, "%s %s\n", core->generic, core->vendor->name);
}

static ssize_t vms_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	int vms, vcpus;

	klu_vms_count(to_core(kobj)->tag, &vms, &vcpus);
	return sysfs_emit(buf, "%d\n", vms);
}

static ssize_t vcpus_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	int vms, vcpus;

	klu_vms_count(to_core(kobj)->tag, &vms, &vcpus);
	return sysfs_emit(buf, "%d\n", vcpus);
}

static struct kobj_attribute kvm_version_attr = __ATTR_RO(kvm_version);
static struct kobj_attribute modules_attr = __ATTR_RO(modules);
static struct kobj_attribute vms_attr = __ATTR_RO(vms);
static struct kobj_attribute vcpus_attr = __ATTR_RO(vcpus);

static struct attribute *klu_core_attrs[] = {
	&kvm_version_attr.attr,
	&modules_attr.attr,
	&vms_attr.attr,
	&vcpus_attr.attr,
	NULL,
};
ATTRIBUTE_GROUPS(klu_core);

static void klu_core_release(struct kobject *kobj)
{
	kfree(to_core(kobj));
}

static struct kobj_type klu_core_ktype = {
	.release = klu_core_release,
	.sysfs_ops = &kobj_sysfs_ops,
	.default_groups = klu_core_groups,
};

int klu_sysfs_add_core(struct klu_core *core)
{
	int r;

	core->kobj.kset = klu_cores_kset;
	r = kobject_init_and_add(&core->kobj, &klu_core_ktype, NULL, "%s", core->tag);
	if (r) {
		kobject_put(&core->kobj);
		return r;
	}
	kobject_uevent(&core->kobj, KOBJ_ADD);
	return 0;
}

void klu_sysfs_del_core(struct klu_core *core)
{
	kobject_put(&core->kobj);
}

int klu_sysfs_init(void)
{
	int r;

	klu_kobj = kobject_create_and_add("kvm_thin", kernel_kobj);
	if (!klu_kobj)
		return -ENOMEM;
	r = sysfs_create_group(klu_kobj, &klu_group);
	if (r)
		goto fail;
	klu_cores_kset = kset_create_and_add("cores", NULL, klu_kobj);
	if (!klu_cores_kset) {
		r = -ENOMEM;
		goto fail;
	}
	r = klu_vms_init(klu_kobj);
	if (r)
		goto fail_cores;
	r = klu_move_init(klu_kobj);
	if (r)
		goto fail_vms;
	return 0;
fail_vms:
	klu_vms_exit();
fail_cores:
	kset_unregister(klu_cores_kset);
fail:
	kobject_put(klu_kobj);
	return r;
}

void klu_sysfs_exit(void)
{
	klu_vms_exit();
	kset_unregister(klu_cores_kset);
	kobject_put(klu_kobj);
}
