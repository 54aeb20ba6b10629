#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# vfio_keepalive.sh: every vfio_keepalive_test subcommand, in the order the QEMU bed's
# keepalive suite runs them, as one kselftest.  It needs the QEMU edu device (the only
# device the test knows how to drive), an IOMMU, and the modules vfio_keepalive and
# iommu_keepalive; without them it skips and says which is missing.  Exit 0 pass,
# 1 fail, 4 skip.
dir=$(dirname "$0")
t=$dir/vfio_keepalive_test
ksft_skip=4

[ "$(id -u)" = 0 ] || { echo "# SKIP: needs root"; exit $ksft_skip; }
edu=""
for d in /sys/bus/pci/devices/*; do
	if [ "$(cat "$d/vendor" 2>/dev/null)" = 0x1234 ] &&
	   [ "$(cat "$d/device" 2>/dev/null)" = 0x11e8 ]; then
		edu=$(basename "$d")
	fi
done
[ -n "$edu" ] || { echo "# SKIP: no edu device (1234:11e8): QEMU -device edu"; exit $ksft_skip; }
[ -e "/sys/bus/pci/devices/$edu/iommu_group" ] ||
	{ echo "# SKIP: $edu has no IOMMU group (no IOMMU, or it is off)"; exit $ksft_skip; }
for m in vfio_iommu_type1 vfio_pci vfio_keepalive; do
	[ -d "/sys/module/$m" ] || modprobe "$m" 2> /dev/null
done
[ -c /dev/vfio-keepalive ] ||
	{ echo "# SKIP: /dev/vfio-keepalive is missing: load vfio_keepalive"; exit $ksft_skip; }

n=0 fail=0
run() {
	n=$((n + 1))
	if "$t" -d "$edu" "$@"; then
		echo "ok $n vfio_keepalive $*"
	else
		echo "not ok $n vfio_keepalive $*"
		fail=1
	fi
}
run info
run stock vfio-pci
run stock vfio-keepalive
run handover kill
run handover exit
run wrongtoken
run notoken
run -t 1500 timeout
run intx
run unbind
exit $fail
