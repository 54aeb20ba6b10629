// SPDX-License-Identifier: GPL-2.0
/*
 * QEMU's edu device through VFIO, for the selftests: see klu_edu.h.
 *
 * Copyright (C) 2026 The kvm-live-upgrade authors.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/vfio.h>

#include "klu_edu.h"

/* The caller's fail or skip callback, with the message formatted here; never returns. */
static void __noreturn end(klu_edu_end_fn fn, int rc, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	fn("%s", msg);
	exit(rc);	/* a callback that returned */
}

static void __noreturn __printf(2, 3) edu_fail(const struct klu_edu *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	end(e->fail ? e->fail : klu_fail, KSFT_FAIL, fmt, ap);
}

static void __noreturn __printf(2, 3) edu_skip(const struct klu_edu *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	end(e->skip ? e->skip : klu_skip, KSFT_SKIP, fmt, ap);
}

/* ---- sysfs and /proc ---------------------------------------------------------------- */

static int write_str(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;

	if (fd < 0)
		return errno;
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s))
		err = errno;
	close(fd);
	return err;
}

/* The last path component of the symlink @path into @buf; false if there is none. */
static bool link_name(const char *path, char *buf, size_t size)
{
	char target[512], *name;
	ssize_t n = readlink(path, target, sizeof(target) - 1);

	if (n < 0)
		return false;
	target[n] = 0;
	name = strrchr(target, '/');
	name = name ? name + 1 : target;
	if (strlen(name) >= size)
		return false;
	memcpy(buf, name, strlen(name) + 1);
	return true;
}

bool klu_edu_is_edu(const char *pci)
{
	char path[300], vendor[32], device[32];

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", pci);
	if (!klu_read_line(path, vendor, sizeof(vendor)) || strcmp(vendor, KLU_EDU_VENDOR))
		return false;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", pci);
	return klu_read_line(path, device, sizeof(device)) && !strcmp(device, KLU_EDU_DEVICE);
}

void klu_edu_find(struct klu_edu *e, const char *want)
{
	struct dirent *d;
	DIR *dir = opendir("/sys/bus/pci/devices");

	while (dir && (d = readdir(dir))) {
		if (d->d_name[0] == '.' || strlen(d->d_name) >= sizeof(e->pci) ||
		    (want && strcmp(want, d->d_name)) || !klu_edu_is_edu(d->d_name))
			continue;
		memcpy(e->pci, d->d_name, strlen(d->d_name) + 1);
		break;
	}
	if (dir)
		closedir(dir);
	if (!e->pci[0])
		edu_skip(e, "no edu device (1234:11e8)%s%s in /sys/bus/pci/devices",
			 want ? " named " : "", want ? want : "");
}

int klu_edu_bind(struct klu_edu *e, const char *driver)
{
	char path[300], group[256], drv[256], dev[256], module[64];
	int err;

	e->driver = driver;
	snprintf(dev, sizeof(dev), "/sys/bus/pci/devices/%s", e->pci);
	snprintf(path, sizeof(path), "%s/iommu_group", dev);
	if (!link_name(path, group, sizeof(group)))
		edu_skip(e, "edu %s has no IOMMU group (no IOMMU, or it is disabled)", e->pci);
	snprintf(path, sizeof(path), "%s/driver", dev);
	if (link_name(path, drv, sizeof(drv)) && !strcmp(drv, driver))
		return atoi(group);

	snprintf(path, sizeof(path), "/sys/bus/pci/drivers/%s", driver);
	if (access(path, F_OK)) {
		/* the module's name: the driver's, with '_' for '-' */
		snprintf(module, sizeof(module), "%s", driver);
		for (err = 0; module[err]; err++)
			if (module[err] == '-')
				module[err] = '_';
		edu_skip(e, "no %s PCI driver (%s is not loaded)", driver, module);
	}
	printf("# binding %s to %s\n", e->pci, driver);
	snprintf(path, sizeof(path), "%s/driver_override", dev);
	err = write_str(path, driver);
	if (err)
		edu_fail(e, "write %s: %s", path, strerror(err));
	snprintf(path, sizeof(path), "%s/driver/unbind", dev);
	if (!access(path, F_OK)) {
		err = write_str(path, e->pci);
		if (err)
			edu_fail(e, "write %s: %s", path, strerror(err));
	}
	err = write_str("/sys/bus/pci/drivers_probe", e->pci);
	if (err)
		edu_fail(e, "write /sys/bus/pci/drivers_probe: %s", strerror(err));
	snprintf(path, sizeof(path), "%s/driver", dev);
	if (!link_name(path, drv, sizeof(drv)) || strcmp(drv, driver))
		edu_fail(e, "edu %s is not bound to %s after drivers_probe", e->pci, driver);
	return atoi(group);
}

int64_t klu_edu_host_irq_count(const char *pci, bool msix, uint32_t vector)
{
	char want[64], line[4096], *p, *end;
	int64_t sum = -1;
	FILE *f;

	snprintf(want, sizeof(want), "vfio-%s[%u](%s)", msix ? "msix" : "msi", vector, pci);
	f = fopen("/proc/interrupts", "r");
	while (f && fgets(line, sizeof(line), f)) {
		p = strstr(line, want) ? strchr(line, ':') : NULL;
		if (!p)
			continue;
		sum = 0;
		for (p++;; p = end) {
			unsigned long long n = strtoull(p, &end, 10);

			if (end == p)
				break;
			sum += n;
		}
		break;
	}
	if (f)
		fclose(f);
	return sum;
}

int64_t klu_edu_host_msi_count(const char *pci)
{
	return klu_edu_host_irq_count(pci, false, 0);
}

/* ---- the device through VFIO -------------------------------------------------------- */

uint32_t klu_edu_rd(struct klu_edu *e, uint32_t reg)
{
	uint32_t v;

	if (pread(e->device, &v, 4, e->bar0 + reg) != 4)
		edu_fail(e, "edu: read of BAR0 register 0x%x: %s", reg, strerror(errno));
	return v;
}

void klu_edu_wr(struct klu_edu *e, uint32_t reg, uint32_t v)
{
	if (pwrite(e->device, &v, 4, e->bar0 + reg) != 4)
		edu_fail(e, "edu: write of BAR0 register 0x%x: %s", reg, strerror(errno));
}

uint16_t klu_edu_cfg_rd16(struct klu_edu *e, uint32_t off)
{
	uint16_t v;

	if (pread(e->device, &v, 2, e->config + off) != 2)
		edu_fail(e, "edu: config read at 0x%x: %s", off, strerror(errno));
	return v;
}

void klu_edu_cfg_wr16(struct klu_edu *e, uint32_t off, uint16_t v)
{
	if (pwrite(e->device, &v, 2, e->config + off) != 2)
		edu_fail(e, "edu: config write at 0x%x: %s", off, strerror(errno));
}

uint64_t klu_edu_region(struct klu_edu *e, uint32_t index, uint64_t min_size)
{
	struct vfio_region_info ri = { .argsz = sizeof(ri), .index = index };

	if (ioctl(e->device, VFIO_DEVICE_GET_REGION_INFO, &ri) < 0)
		edu_fail(e, "VFIO_DEVICE_GET_REGION_INFO %u: %s", index, strerror(errno));
	if (ri.size < min_size || (ri.flags & (VFIO_REGION_INFO_FLAG_READ |
					       VFIO_REGION_INFO_FLAG_WRITE)) !=
	    (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE))
		edu_fail(e, "VFIO region %u: size 0x%llx flags 0x%x, want >= 0x%llx, read-write",
			 index, (unsigned long long)ri.size, ri.flags,
			 (unsigned long long)min_size);
	return ri.offset;
}

void klu_edu_regions(struct klu_edu *e)
{
	uint32_t id;

	e->bar0 = klu_edu_region(e, VFIO_PCI_BAR0_REGION_INDEX, 0x100);
	e->config = klu_edu_region(e, VFIO_PCI_CONFIG_REGION_INDEX, 0x40);
	id = klu_edu_rd(e, EDU_ID);
	if ((id & 0xff) != 0xed)
		edu_fail(e, "edu identification register reads 0x%08x, want 0x......ed", id);
}

void klu_edu_open(struct klu_edu *e, int group_nr, unsigned int flags)
{
	struct vfio_group_status status = { .argsz = sizeof(status) };
	bool keepalive = e->driver && !strcmp(e->driver, "vfio-keepalive");
	char path[64];

	e->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (e->container < 0)
		edu_skip(e, "/dev/vfio/vfio: %s (vfio is not loaded)", strerror(errno));
	if (ioctl(e->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
		edu_fail(e, "VFIO_GET_API_VERSION: not %d", VFIO_API_VERSION);
	if (ioctl(e->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) <= 0)
		edu_skip(e, "VFIO has no type1v2 IOMMU (vfio_iommu_type1 is not loaded)");
	snprintf(path, sizeof(path), "/dev/vfio/%d", group_nr);
	e->group = open(path, O_RDWR | O_CLOEXEC);
	if (e->group < 0)
		edu_fail(e, "%s: %s%s", path, strerror(errno), errno != EBUSY ? "" : keepalive ?
			 " (kept by an earlier run? it is released at its reclaim timeout)" :
			 " (another process has the group open)");
	if (ioctl(e->group, VFIO_GROUP_GET_STATUS, &status) < 0)
		edu_fail(e, "VFIO_GROUP_GET_STATUS: %s", strerror(errno));
	if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		edu_fail(e, "VFIO group %d is not viable: a device in it is not bound to VFIO",
			 group_nr);
	if (ioctl(e->group, VFIO_GROUP_SET_CONTAINER, &e->container) < 0)
		edu_fail(e, "VFIO_GROUP_SET_CONTAINER: %s", strerror(errno));
	if (ioctl(e->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU) < 0)
		edu_fail(e, "VFIO_SET_IOMMU type1v2: %s", strerror(errno));
	if ((flags & KLU_EDU_NEED_VADDR) &&
	    ioctl(e->container, VFIO_CHECK_EXTENSION, VFIO_UPDATE_VADDR) <= 0)
		edu_skip(e, "type1 has no VFIO_UPDATE_VADDR, which a new owner needs");
	e->device = ioctl(e->group, VFIO_GROUP_GET_DEVICE_FD, e->pci);
	if (e->device < 0)
		edu_fail(e, "VFIO_GROUP_GET_DEVICE_FD %s: %s", e->pci, strerror(errno));
	if (flags & KLU_EDU_ANY_DEVICE)
		e->config = klu_edu_region(e, VFIO_PCI_CONFIG_REGION_INDEX, 0x40);
	else
		klu_edu_regions(e);
	/* VFIO cleared bus mastering when it opened the device. */
	klu_edu_cfg_wr16(e, PCI_CMD_OFF, klu_edu_cfg_rd16(e, PCI_CMD_OFF) | PCI_CMD_MEMORY |
			 PCI_CMD_MASTER);
}

void klu_edu_close(struct klu_edu *e)
{
	if (e->device >= 0)
		close(e->device);
	if (e->group >= 0)
		close(e->group);
	if (e->container >= 0)
		close(e->container);
	e->device = -1;
	e->group = -1;
	e->container = -1;
}

void klu_edu_msi_enable(struct klu_edu *e, int efd)
{
	klu_edu_irq_enable(e, VFIO_PCI_MSI_IRQ_INDEX, 0, efd);
}

void klu_edu_irq_enable(struct klu_edu *e, uint32_t index, uint32_t vector, int efd)
{
	const char *kind = index == VFIO_PCI_MSIX_IRQ_INDEX ? "MSI-X" : "MSI";
	struct vfio_irq_info info = { .argsz = sizeof(info), .index = index };
	union {
		struct vfio_irq_set s;
		uint8_t buf[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
	} u;
	int32_t fd;

	if (ioctl(e->device, VFIO_DEVICE_GET_IRQ_INFO, &info) < 0)
		edu_fail(e, "VFIO_DEVICE_GET_IRQ_INFO %s: %s", kind, strerror(errno));
	if (info.count <= vector)
		edu_fail(e, "%s has no %s vector %u (VFIO says it has %u)", e->pci, kind, vector,
			 info.count);
	e->efd = efd >= 0 ? efd : eventfd(0, EFD_CLOEXEC);
	if (e->efd < 0)
		edu_fail(e, "eventfd: %s", strerror(errno));
	memset(&u, 0, sizeof(u));
	u.s.argsz = sizeof(u.buf);
	u.s.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
	u.s.index = index;
	u.s.start = vector;
	u.s.count = 1;
	fd = e->efd;
	memcpy(u.s.data, &fd, sizeof(fd));
	if (ioctl(e->device, VFIO_DEVICE_SET_IRQS, &u.s) < 0)
		edu_fail(e, "VFIO_DEVICE_SET_IRQS %s vector %u: %s", kind, vector, strerror(errno));
}

/* "iova %#llx": 0 prints as "iova 0", the others with their 0x. */
void klu_edu_dma_map(struct klu_edu *e, void *mem, uint64_t iova, uint64_t size,
		     uint32_t flags)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = flags,
		.vaddr = (uintptr_t)mem,
		.iova = iova,
		.size = size,
	};

	if (ioctl(e->container, VFIO_IOMMU_MAP_DMA, &map) < 0)
		edu_fail(e, "VFIO_IOMMU_MAP_DMA iova %#llx size 0x%llx flags 0x%x: %s",
			 (unsigned long long)iova, (unsigned long long)size, flags,
			 strerror(errno));
}

void klu_edu_dma_unmap(struct klu_edu *e, uint64_t iova, uint64_t size, uint32_t flags)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap),
		.flags = flags,
		.iova = iova,
		.size = size,
	};

	if (ioctl(e->container, VFIO_IOMMU_UNMAP_DMA, &unmap) < 0)
		edu_fail(e, "VFIO_IOMMU_UNMAP_DMA iova %#llx size 0x%llx flags 0x%x: %s",
			 (unsigned long long)iova, (unsigned long long)size, flags,
			 strerror(errno));
}

void klu_edu_dma_start(struct klu_edu *e, uint32_t src, uint32_t dst, uint32_t len,
		       uint32_t cmd)
{
	uint32_t busy = klu_edu_rd(e, EDU_DMA_CMD);

	if (busy & EDU_DMA_RUN)
		edu_fail(e, "edu: a DMA is still running (command register 0x%x)", busy);
	klu_edu_wr(e, EDU_DMA_SRC, src);
	klu_edu_wr(e, EDU_DMA_DST, dst);
	klu_edu_wr(e, EDU_DMA_CNT, len);
	klu_edu_wr(e, EDU_DMA_CMD, cmd);
}

void klu_edu_dma_wait(struct klu_edu *e, uint64_t timeout_ns, const char *what)
{
	uint64_t start = klu_now_ns();

	while (klu_edu_rd(e, EDU_DMA_CMD) & EDU_DMA_RUN) {
		if (klu_now_ns() - start > timeout_ns)
			edu_fail(e, "%s: the edu DMA did not finish in %llu s", what,
				 (unsigned long long)(timeout_ns / 1000000000ull));
		usleep(1000);
	}
}
