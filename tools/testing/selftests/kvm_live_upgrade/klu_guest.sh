# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the tests that run a real Linux guest under the unmodified QEMU and read
# its klu_guest_load lines from the guest's serial console, saved to a file OUT
# (real_vm.sh here; the test beds' realvm, realpt and realmig suites, whose lib.sh
# sources this file).  POSIX sh with `local`, as busybox and dash have it.  The
# includer defines klu_say MESSAGE, which reports a diagnostic; the guest's own lines
# go to stdout.
#
# Copyright (C) 2026 The kvm-live-upgrade authors.

# shellcheck disable=SC3043	# local: busybox sh and dash have it

# klu_guest_initrd OUT KREL LOAD [MODULE.ko...]: the guest's initramfs: a static
# busybox ($KLU_BUSYBOX, or busybox on PATH), klu_guest_init (beside this file) as its
# /init, the program LOAD as klu_guest_load, KREL's virtio modules (modinfo) and each
# MODULE.ko (stripped where objcopy is there).
klu_guest_initrd() {
	local out="$1" krel="$2" load="$3" root bb m f here
	shift 3
	here=${KLU_GUEST_DIR:-$(dirname "$0")}
	bb=${KLU_BUSYBOX:-$(command -v busybox)} ||
		{ klu_say "no busybox"; return 1; }
	# a static one: the initramfs has no libc
	if ldd "$bb" > /dev/null 2>&1; then
		klu_say "$bb is not a static busybox (Debian: busybox-static)"
		return 1
	fi
	root=$(mktemp -d) || return 1
	chmod 0755 "$root"
	if ! mkdir -p "$root/bin" "$root/proc" "$root/sys" "$root/dev" "$root/lib/modules" ||
	   ! cp "$bb" "$root/bin/busybox" || ! cp "$here/klu_guest_init" "$root/init" ||
	   ! chmod 0755 "$root/init"; then
		rm -rf "$root"
		return 1
	fi
	if ! objcopy --strip-all "$load" "$root/bin/klu_guest_load" 2> /dev/null &&
	   ! cp "$load" "$root/bin/klu_guest_load"; then
		rm -rf "$root"
		return 1
	fi
	for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk; do
		if ! f=$(modinfo -k "$krel" -n "$m") || ! cp "$f" "$root/lib/modules/$m.ko"; then
			klu_say "no module $m for $krel"
			rm -rf "$root"
			return 1
		fi
	done
	for m in "$@"; do
		if ! objcopy --strip-debug "$m" "$root/lib/modules/${m##*/}" 2> /dev/null &&
		   ! cp "$m" "$root/lib/modules/${m##*/}"; then
			rm -rf "$root"
			return 1
		fi
	done
	(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) |
		gzip -9 > "$out.tmp" && mv "$out.tmp" "$out"
	m=$?
	rm -rf "$root"
	return $m
}

# klu_guest_tail OUT: its last lines (and QEMU's own, OUT.err), for a failure's log.
klu_guest_tail() {
	tr -d '\r' < "$1" | tail -n 40
	[ -f "$1.err" ] && cat "$1.err"
}

# klu_rounds OUT: the number of the guest's last round, or -1.
klu_rounds() {
	local n
	n=$(tr -d '\r' < "$1" | grep -ao 'klu-guest round [0-9]*' | tail -n 1)
	echo "${n##* }" | grep -x '[0-9][0-9]*' || echo -1
}

# klu_uptime: whole seconds since boot, without a fork.
klu_uptime() {
	local up rest
	read -r up rest < /proc/uptime
	echo "${up%.*}"
}

# klu_rounds_after N OUT PID: wait until the guest has done N rounds more than now, for
# as long as its QEMU (PID) runs.  A hang guard only: a guest that has done no round
# for 120 s by the clock (it does several a second, and boots in about 15 s in a bed)
# is stuck, and its console says where.
klu_rounds_after() {
	local want now last=-2 since
	want=$(($(klu_rounds "$2") + $1))
	since=$(klu_uptime)
	while now=$(klu_rounds "$2") && [ "$now" -lt $want ]; do
		kill -0 "$3" 2> /dev/null ||
			{ klu_say "QEMU $3 ended, at round $now"; klu_guest_tail "$2"; return 1; }
		[ "$now" != "$last" ] && since=$(klu_uptime) && last=$now
		[ $(($(klu_uptime) - since)) -lt 120 ] ||
			{ klu_say "no round from the guest for 120 s (at round $now)"; klu_guest_tail "$2"; return 1; }
		sleep 0.2
	done
}

# klu_guest_done OUT: the guest reported no error at its end.
klu_guest_done() {
	tr -d '\r' < "$1" | grep -a 'klu-guest ERROR' | head -n 20
	tr -d '\r' < "$1" | grep -a 'klu-guest' | tail -n 3
	grep -aq 'klu-guest done rounds=[0-9]* errors=0 ' "$1" && ! grep -aq 'klu-guest ERROR' "$1"
}
