# SPDX-License-Identifier: GPL-2.0
#
# Helpers for the guest side of the test beds.  Results go to fd 3 (ttyS1) as TAP-like
# lines the host counts:  "ok <name>", "not ok <name>", "ok <name> # SKIP <why>",
# and "selftest <mode> <name> <pass|fail|skip|timeout>" for the upstream comparison.

KLU_STOCK=/lib/modules/stock
KLU_MODS=/lib/modules/klu
: "${KLU_test_timeout:=120}"

klu_log() { echo "klu: $*" > /dev/console; }

t_result() {	# t_result "ok"|"not ok" name [# SKIP reason]
	echo "$*" >&3
	echo "$*" > /dev/console
}

# t_run name cmd...: run one test under the per-test time limit, exit 0 = pass,
# 4 = skip (KSFT_SKIP), anything else = fail.  Output goes to the console.
# A test still running at its limit first has the kernel log where every blocked task
# waits (SysRq w), then is killed.
t_run() {
	local name=$1 rc p w
	shift
	klu_log "--- $name: $*"
	"$@" > /tmp/t.out 2>&1 &
	p=$!
	# The watchdog also says every 30 s that the test still runs: the host takes a
	# silent console for a hang or a lost interrupt (beds/run), and a long test's own
	# output comes at its end.  A guest whose timers stop says nothing.
	(
		t=0
		while [ "$t" -lt "$KLU_test_timeout" ]; do
			s=$((KLU_test_timeout - t))
			[ "$s" -gt 30 ] && s=30
			sleep "$s"
			t=$((t + s))
			kill -0 $p 2> /dev/null || exit 0
			[ "$t" -lt "$KLU_test_timeout" ] && klu_log "$name: running for ${t}s"
		done
		klu_log "$name: still running after ${KLU_test_timeout}s; the blocked tasks:"
		echo w > /proc/sysrq-trigger
		kill -KILL $p
	) &
	w=$!
	wait $p
	rc=$?
	kill $w 2> /dev/null
	cat /tmp/t.out > /dev/console
	case $rc in
	0) t_result "ok" "$name" ;;
	4) t_result "ok" "$name # SKIP $(grep -m1 -i skip /tmp/t.out)" ;;
	137) t_result "not ok" "$name # TIMEOUT after ${KLU_test_timeout}s" ;;
	*) t_result "not ok" "$name # exit $rc" ;;
	esac
	return $rc
}

t_check() {	# t_check name cmd...: a plain assertion, no time limit
	local name=$1
	shift
	if "$@" > /dev/console 2>&1; then t_result "ok" "$name"; else t_result "not ok" "$name"; fi
}

klu_vendor() {
	if grep -qw vmx /proc/cpuinfo; then echo intel
	elif grep -qw svm /proc/cpuinfo; then echo amd
	else echo none; fi
}

# klu_modload NAME: load a module and, first, what modpost says it depends on
# (/klu/modules.deps, written by mkinitramfs).
klu_modload() {
	local name dir dep
	grep -q "^$1 " /proc/modules && return 0
	set -- $(grep "^$1 " /klu/modules.deps)
	[ $# -ge 2 ] || { klu_log "no module $1 in this initramfs"; return 1; }
	name=$1 dir=$2
	shift 2
	for dep in "$@"; do klu_modload "$dep" || return 1; done
	# the beds test failed moves: kvm_thin's test knobs take writes only with this
	if [ "$name" = kvm_thin ]; then
		insmod "/lib/modules/$dir/$name.ko" fault_injection=1 || return 1
	else
		insmod "/lib/modules/$dir/$name.ko" || return 1
	fi
	# where it loaded, for the host to name the code a wedged bed is in (beds/run)
	case $name in
	kvm*) echo "klu-module $(grep "^$name " /proc/modules | cut -d' ' -f1,6)" > /dev/console ;;
	esac
}

# klu_load stock | klu_load core TAG: load a KVM module set, the stock one from the
# distro kernel or one of our core sets.
klu_load() {
	local vendor=$(klu_vendor)
	[ "$vendor" != none ] || { klu_log "the CPU has neither VMX nor SVM"; return 1; }
	case $1 in
	stock) klu_modload "kvm_$vendor" ;;
	core) klu_modload "kvm_${vendor}_core_$2" ;;
	esac
}

# klu_core_unload TAG: unload core pair TAG once nothing uses it.  After a move the old
# core is let go of as each vCPU thread runs again on the new core: wait for that event
# (the vendor module's reference count reaching 0), not for a time.  A core that still
# has a VM, or is not loaded, fails at once; the 300 s bound is a guard against a leaked
# reference, which then fails the rmmod and says so.
klu_core_unload() {
	local m=kvm_$(klu_vendor)_core_$1 i=0
	[ -r "/sys/module/$m/refcnt" ] || { klu_log "core $1 ($m) is not loaded"; return 1; }
	[ "$(cat "/sys/kernel/kvm_thin/cores/$1/vms" 2>/dev/null)" = 0 ] ||
		{ klu_log "core $1 still has VMs: $(cat "/sys/kernel/kvm_thin/cores/$1/vms")"; return 1; }
	while [ "$(cat "/sys/module/$m/refcnt")" != 0 ] && [ $i -lt 3000 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	[ $i -lt 3000 ] || klu_log "$m still has $(cat "/sys/module/$m/refcnt") references after 300 s"
	rmmod "$m" && rmmod "kvm_core_$1"
}

# klu_vm_of PID: the id in kvm_thin's registry of the VM that process PID created, once
# it is there with at least one vCPU.  Nothing (and 1) if the process ends first or
# after 300 s: a bound well past any VM's creation, so that a missing VM fails its
# suite instead of hanging the bed.
klu_vm_of() {
	local d i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 3000 ]; do
		for d in /sys/kernel/kvm_thin/vms/*; do
			[ "$(cat "$d/pid" 2>/dev/null)" = "$1" ] &&
				[ "$(cat "$d/vcpus" 2>/dev/null)" -ge 1 ] 2>/dev/null &&
				{ echo "${d##*/}"; return 0; }
		done
		sleep 0.1
		i=$((i + 1))
	done
	klu_log "no VM of process $1 in kvm_thin's registry (it ended, or 300 s passed)"
	return 1
}

# klu_ticked N FILE PID: the boot-sector ticker (ticker.S) has printed tick N (three
# digits) in FILE, waited for as long as its QEMU, PID, runs (the bed's time limits
# bound a guest that hangs).
klu_ticked() {
	while :; do
		grep -q "klu-tick $1" "$2" 2>/dev/null && return 0
		kill -0 "$3" 2>/dev/null || break
		sleep 0.05
	done
	grep -q "klu-tick $1" "$2" 2>/dev/null && return 0
	klu_log "no tick $1 from the guest in $2, and its QEMU has ended"
	return 1
}

# The Linux guest of the real-VM suites (klu_guest_load, its lines on a QEMU's serial
# output saved to OUT): klu_rounds, klu_rounds_after, klu_guest_tail, klu_guest_done,
# shared with the real_vm.sh kselftest.
klu_say() { klu_log "$*"; }
[ -f /klu/bin/klu_guest.sh ] && . /klu/bin/klu_guest.sh

# klu_edu_find: the PCI name of the bed's edu device (QEMU's -device edu), or nothing.
klu_edu_find() {
	local d
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ] &&
			{ echo "${d##*/}"; return 0; }
	done
	return 0
}

# klu_edu_vfio PCI: PCI bound to stock vfio-pci, its modules loaded.
klu_edu_vfio() {
	local m
	for m in vfio vfio_iommu_type1 vfio_pci; do klu_modload $m || return 1; done
	echo vfio-pci > "/sys/bus/pci/devices/$1/driver_override"
	[ -e "/sys/bus/pci/devices/$1/driver" ] ||
		echo "$1" > /sys/bus/pci/drivers_probe
	[ "$(basename "$(readlink "/sys/bus/pci/devices/$1/driver")")" = vfio-pci ]
}

# klu_unload: remove every KVM module, vendor modules first.
klu_unload() {
	local m
	for m in $(awk '$1 ~ /^kvm_(intel|amd)/ {print $1}' /proc/modules); do rmmod "$m" || return 1; done
	for m in $(awk '$1 ~ /^kvm/ {print $1}' /proc/modules); do rmmod "$m" || return 1; done
	! grep -q '^kvm' /proc/modules
}

# Upstream selftests read /sys/module/kvm{,_intel,_amd}/parameters.  Our cores carry
# other module names, so present their parameter directories under the stock names too
# (symlinks: the values are live), in this guest's mount namespace only.
klu_stock_param_view() {
	local tag=$1 d v src
	mkdir -p /run/sysmodule
	mount --bind /sys/module /run/sysmodule
	mount -t tmpfs tmpfs /sys/module
	for d in /run/sysmodule/*; do ln -s "$d" "/sys/module/${d##*/}"; done
	for v in "" _intel _amd; do
		src=/run/sysmodule/kvm${v}_core_$tag
		[ -d "$src" ] && ln -s "$src" "/sys/module/kvm$v"
	done
	true
}

klu_stock_param_view_end() {
	umount /sys/module && umount /run/sysmodule
}

klu_dmesg_check() {
	# The host's console check's patterns (beds/log-patterns, which beds/run reads
	# too), with those of the debug bed's checkers, which no other kernel prints.
	. /klu/log-patterns
	if dmesg | grep -E "$klu_log_bad|$klu_log_debug" > /tmp/bad; then
		t_result "not ok" "kernel log free of WARN/BUG/oops"
		cat /tmp/bad > /dev/console
	else
		t_result "ok" "kernel log free of WARN/BUG/oops"
	fi
}
