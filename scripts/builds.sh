# SPDX-License-Identifier: GPL-2.0
#
# The builds that the test beds boot with, in one list for make demo (beds/demo) and
# make check (scripts/check), so that the two cannot drift: whatever beds/mkinitramfs
# installs is built here.  Sourced, with $top, $build and $krel set.
#
# klu_builds RUNNER: run each build as `RUNNER NAME CMD...`, in order; RUNNER returns
# non-zero for a failed build.  klu_builds goes on after a failure (make check reports
# every one) and returns 1 if any failed.  Each of kbuild, kvm-src-prepare and the
# selftests' Makefiles skips what is up to date, so a second caller (make check after
# make demo, as .ci/run does) pays little more than the checks.

klu_builds() {
	local run=$1 series prev_src cur_src prev_ver cur_ver ok=0
	series=$(echo "$krel" | cut -d. -f1-2)
	cur_src=/usr/src/linux-source-$series.tar.xz
	cur_ver=$(dpkg-query -W -f='${Version}' "linux-source-$series")
	if prev_src=$("$top/scripts/kvm-src-prev" "$krel" "$build/dl"); then
		prev_ver=$(basename "$prev_src" | sed -n 's/^linux-source-[0-9.]*_\(.*\)_all\.deb$/\1/p')
		"$run" "build core v1 from linux-source-$series $prev_ver (previous point release)" \
			make -C "$top" CORE_TAG=v1 KVM_SRC="$prev_src" || ok=1
	else
		"$run" "find the previous point release of linux-source-$series" false
		ok=1
	fi
	"$run" "build core v2 from linux-source-$series $cur_ver (current)" \
		make -C "$top" CORE_TAG=v2 KVM_SRC="$cur_src" || ok=1
	"$run" "build the test modules (kvm_thin refusals, irq-bypass and IRTE helpers, the guest edu driver)" \
		make -C "$top" testmods || ok=1
	"$run" "build kvm_live_upgrade selftests" \
		make -C "$top/tools/testing/selftests/kvm_live_upgrade" OUTPUT="$build/klu-selftests" ||
		ok=1
	"$run" "build the vfio_keepalive selftest" \
		make -C "$top/tools/testing/selftests/vfio_keepalive" OUTPUT="$build/klu-selftests" ||
		ok=1
	return $ok
}
