# SPDX-License-Identifier: GPL-2.0
#
# kvm-live-upgrade: top-level driver.
#
#   make                 build the core set CORE_TAG (default v1) from KVM_SRC
#   make CORE_TAG=v2 KVM_SRC=<deb|tarball|tree>
#   make demo            build, boot the emulated host, run a VM on our cores
#   make check           every test; last line "N passed, M failed"
#   make deps            install the Debian packages the above need
#
# KDIR is the target kernel's build tree.  It defaults to the Debian 6.1 kernel the test
# beds boot, not to `uname -r`.

TOP := $(CURDIR)
BUILD ?= $(TOP)/build
# The Debian kernel the beds boot: what linux-headers-amd64 points at.
KREL ?= $(shell $(TOP)/scripts/target-kernel)
KDIR ?= /lib/modules/$(KREL)/build
KVM_SRC ?= $(firstword $(wildcard /usr/src/linux-source-$(shell echo $(KREL) | cut -d. -f1-2).tar.xz))
CORE_TAG ?= v1
JOBS ?= $(shell nproc)

CORE_TREE = $(BUILD)/$(CORE_TAG)/src
CORE_KDIR = $(CORE_TREE)/arch/x86/kvm
CORE_MODS = kvm_core_$(CORE_TAG).ko kvm_intel_core_$(CORE_TAG).ko kvm_amd_core_$(CORE_TAG).ko

.PHONY: all thin cores testmods deps demo check clean distclean selftests dkms core-install deb

all: cores

# Our own modules: kvm_thin, which the cores link against (its Module.symvers), and
# iommu_keepalive + vfio_keepalive.
OWN_MODS = kvm_thin/kvm_thin.ko iommu_keepalive/iommu_keepalive.ko vfio_keepalive/vfio_keepalive.ko
thin:
	$(MAKE) -C $(KDIR) M=$(TOP) -j$(JOBS) modules
	@mkdir -p $(BUILD)/modules
	@cp $(OWN_MODS) $(BUILD)/modules/

# Modules the selftests load to check kvm_thin's refusals.
TESTMODS := $(TOP)/tools/testing/selftests/kvm_live_upgrade/modules
testmods: thin
	$(MAKE) -C $(KDIR) M=$(TESTMODS) KBUILD_EXTRA_SYMBOLS=$(TOP)/Module.symvers \
		KBUILD_MODPOST_WARN=1 modules
	@mkdir -p $(BUILD)/testmods
	@cp $(TESTMODS)/*.ko $(BUILD)/testmods/

deps:
	@$(TOP)/scripts/deps

cores: thin
	@case "$(CORE_TAG)" in ''|[!a-z]*|*[!a-z0-9_]*) \
		echo "CORE_TAG '$(CORE_TAG)' must be a lower-case letter, then lower-case letters, digits and _" >&2; exit 1;; esac
	@test -n "$(KVM_SRC)" || { echo "no KVM source: install linux-source-X.Y or pass KVM_SRC=" >&2; exit 1; }
	@$(TOP)/scripts/kvm-src-prepare "$(KVM_SRC)" "$(CORE_TREE)" "$(KDIR)" "$(CORE_TAG)"
	$(MAKE) -C $(KDIR) M=$(CORE_KDIR) KLU_TOP=$(TOP) CORE_TAG=$(CORE_TAG) -j$(JOBS) \
		KBUILD_EXTRA_SYMBOLS=$(TOP)/Module.symvers modules
	@$(TOP)/kvm_core/check-exports $(CORE_KDIR)/Module.symvers $(CORE_TAG) \
		$(addprefix $(CORE_KDIR)/,$(CORE_MODS))
	@cd $(CORE_KDIR) && cp $(CORE_MODS) $(BUILD)/modules/
	@echo "  CORES   $(addprefix $(BUILD)/modules/,$(CORE_MODS))"

# DKMS (debian/kvm-live-upgrade-dkms.dkms): kvm_thin and the boot core pair, for KREL.
dkms:
	$(MAKE) -C $(TOP) KREL=$(KREL) CORE_TAG=boot cores

# kvm-upgrade build: a core pair, installed for KREL under INSTALL_MOD_DIR, depmod run.
INSTALL_MOD_DIR ?= updates/kvm-live-upgrade
core-install: cores
	install -d $(DESTDIR)/lib/modules/$(KREL)/$(INSTALL_MOD_DIR)
	install -m 0644 $(addprefix $(BUILD)/modules/,$(CORE_MODS)) \
		$(DESTDIR)/lib/modules/$(KREL)/$(INSTALL_MOD_DIR)/
	test -n "$(DESTDIR)" || depmod -a $(KREL)

# The Debian package kvm-live-upgrade-dkms, built from a copy of the tracked files (or,
# outside a git checkout, of every file but the build directory).
DEB_VERSION = $(shell dpkg-parsechangelog -l $(TOP)/debian/changelog -SVersion)
DEB_FILES = { git ls-files -z 2>/dev/null || find . -path ./build -prune -o -type f -print0; }
deb:
	rm -rf $(BUILD)/deb && mkdir -p $(BUILD)/deb/kvm-live-upgrade-$(DEB_VERSION)
	cd $(TOP) && $(DEB_FILES) | xargs -0 cp -a --parents -t $(BUILD)/deb/kvm-live-upgrade-$(DEB_VERSION)
	cd $(BUILD)/deb/kvm-live-upgrade-$(DEB_VERSION) && dpkg-buildpackage -b -us -uc -tc
	@echo "  DEB     $$(ls $(BUILD)/deb/*.deb)"

demo:
	@$(TOP)/scripts/deps
	@$(TOP)/beds/demo

check:
	@$(TOP)/scripts/deps
	@$(TOP)/scripts/check

clean:
	rm -rf $(BUILD)
	$(MAKE) -C $(KDIR) M=$(TOP) clean
	$(MAKE) -C $(KDIR) M=$(TESTMODS) clean

distclean: clean
