#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# real_vm.sh [CONFIG]: a real Linux guest under the unmodified QEMU, moved between
# cores while it works.  qemu-system-x86_64 -enable-kvm boots a Linux kernel with QEMU's
# default devices (std VGA, whose vram slot logs dirty pages, a NIC, IDE or AHCI...),
# 256 MiB, a virtio disk and an initramfs whose klu_guest_load checks its memory word by
# word, both clocks and the disk, round after round (klu_guest.sh, klu_guest_init).
# Once it works, its VM moves to another loaded core, back, and there again, each move
# three of the guest's rounds after the last (waited for, not slept for).  Then the
# guest is told to stop: it must report no error and power off, QEMU must exit 0, and
# the guest's longest pause may pass the longest blackout by a second at most.
#
# CONFIG:
#   pc      QEMU's default machine (i440FX), 2 vCPUs (the default)
#   q35     q35, 4 vCPUs
#   hyperv  pc with Hyper-V enlightenments (relaxed, vapic, time, vpindex, synic, stimer)
#   uefi    q35 with OVMF ($KLU_OVMF_CODE, default Debian's ovmf OVMF_CODE_4M.fd, and a
#           copy of $KLU_OVMF_VARS), 2 vCPUs
# Environment:
#   KLU_GUEST_KERNEL  the guest's kernel (default /boot/vmlinuz-$(uname -r))
#   KLU_GUEST_INITRD  its initramfs; by default built here, with klu_guest_initrd, from
#                     the kernel's own virtio modules and a static busybox
#                     ($KLU_BUSYBOX or busybox on PATH; Debian: busybox-static)
#   KLU_QEMU          the QEMU (default qemu-system-x86_64)
# Skips (exit 4), saying what is missing: kvm_thin not loaded, fewer than two cores, no
# QEMU, no guest kernel, no initramfs and none can be built, for uefi no OVMF.  The test
# beds run pc, q35 and hyperv (their realvm suite); their emulated host cannot run
# OVMF, so uefi runs on hosts with hardware virtualisation only.  POSIX sh, as
# live_move.sh.
#
# Copyright (C) 2026 The kvm-live-upgrade authors.

KSFT_PASS=0
KSFT_FAIL=1
KSFT_SKIP=4

thin=${KLU_SYS:-/sys/kernel/kvm_thin}
dir=$(dirname "$0")
cfg=${1:-pc}
qemu=${KLU_QEMU:-qemu-system-x86_64}
kernel=${KLU_GUEST_KERNEL:-/boot/vmlinuz-$(uname -r)}
initrd=${KLU_GUEST_INITRD:-}
tmp=
pq=

say() {
	echo "# $*"
}
# shellcheck disable=SC2317	# called by klu_guest.sh
klu_say() { say "$@"; }

skip() {
	echo "ok 1 # SKIP $*"
	exit $KSFT_SKIP
}

fail() {
	echo "not ok 1 real VM ($cfg): $*"
	exit $KSFT_FAIL
}

# shellcheck disable=SC2317	# run by the EXIT trap
cleanup() {
	if [ -n "$pq" ]; then
		kill -KILL "$pq" 2> /dev/null
		wait "$pq" 2> /dev/null
	fi
	[ -n "$tmp" ] && rm -rf "$tmp"
}

echo "TAP version 13"
echo "1..1"
[ -f "$dir/klu_guest.sh" ] || fail "$dir/klu_guest.sh is missing"
KLU_GUEST_DIR=$dir	# klu_guest_initrd's klu_guest_init
export KLU_GUEST_DIR
# shellcheck source=klu_guest.sh
. "$dir/klu_guest.sh"

cpu="-cpu host" smp="-smp 2" machine=
case $cfg in
pc) ;;
q35) machine="-machine q35" smp="-smp 4" ;;
hyperv) cpu="-cpu host,hv_relaxed,hv_vapic,hv_time,hv_vpindex,hv_synic,hv_stimer" ;;
uefi)
	code=${KLU_OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
	vars=${KLU_OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}
	if [ ! -f "$code" ] || [ ! -f "$vars" ]; then
		skip "no OVMF ($code, $vars): Debian's ovmf, or KLU_OVMF_CODE and KLU_OVMF_VARS"
	fi
	;;
*) fail "unknown configuration '$cfg' (pc, q35, hyperv, uefi)" ;;
esac

[ -d "$thin" ] || skip "kvm_thin is not loaded"
other=
active=$(cat "$thin/active")
for d in "$thin"/cores/*; do
	[ -d "$d" ] && [ "${d##*/}" != "$active" ] && other=${d##*/}
done
[ -n "$active" ] || fail "no active core"
[ -n "$other" ] ||
	skip "a live move needs two loaded cores (active: ${active:-none}): load a second core pair, e.g. kvm-upgrade load <tag>"
command -v "$qemu" > /dev/null 2>&1 || skip "no $qemu (Debian: qemu-system-x86)"
[ -r "$kernel" ] || skip "no guest kernel $kernel (KLU_GUEST_KERNEL)"

tmp=$(mktemp -d) || fail "mktemp -d failed"
trap cleanup EXIT
trap 'fail "interrupted by a signal"' HUP INT TERM
if [ -z "$initrd" ]; then
	[ -x "$dir/klu_guest_load" ] || fail "$dir/klu_guest_load is missing"
	klu_guest_initrd "$tmp/initrd.gz" "$(uname -r)" "$dir/klu_guest_load" ||
		skip "no guest initramfs, and none could be built here (see above; or KLU_GUEST_INITRD)"
	initrd=$tmp/initrd.gz
fi
if [ "$cfg" = uefi ]; then
	cp "$vars" "$tmp/vars.fd" || fail "cannot copy $vars"
	machine="-machine q35 -drive if=pflash,format=raw,readonly=on,file=$code
		-drive if=pflash,format=raw,file=$tmp/vars.fd"
fi

out=$tmp/guest.out
mkfifo "$tmp/in" || fail "mkfifo failed"
exec 7<> "$tmp/in"
dd if=/dev/zero of="$tmp/disk.img" bs=1M count=8 2> /dev/null || fail "cannot make the disk"
for d in "$thin"/vms/*; do echo "${d##*/}"; done > "$tmp/vms.before"
say "config $cfg on $active, moves to $other, $active, $other; kernel $kernel"
# No argument has a space.  -no-reboot: a guest that panics ends QEMU.
# shellcheck disable=SC2086
"$qemu" -enable-kvm $cpu $machine $smp -m 256 -display none \
	-serial stdio -monitor none -no-reboot \
	-kernel "$kernel" -initrd "$initrd" -append "console=ttyS0 panic=-1 quiet" \
	-drive "file=$tmp/disk.img,format=raw,if=virtio" <&7 > "$out" 2> "$out.err" &
pq=$!

klu_rounds_after 2 "$out" $pq || fail "the guest did not get going"
id=
for d in "$thin"/vms/*; do
	[ -d "$d" ] && ! grep -qx "${d##*/}" "$tmp/vms.before" && id=${d##*/}
done
if [ -z "$id" ] || [ "$(cat "$thin/vms/$id/pid")" != $pq ]; then
	fail "no VM of QEMU (pid $pq)"
fi
grep -a "klu-guest boot" "$out" | sed 's/^/# /'

bo_max=0
for to in $other $active $other; do
	echo "$id $to" > "$thin/move" || fail "the move of VM $id to $to: $(cat "$thin/vms/$id/last_move")"
	lm=$(cat "$thin/vms/$id/last_move")
	say "VM $id to $to: $lm"
	bo=$(echo "$lm" | sed -n 's/.* blackout_ns=\([0-9]*\).*/\1/p')
	[ -n "$bo" ] && [ "$bo" -gt "$bo_max" ] && bo_max=$bo
	klu_rounds_after 3 "$out" $pq || fail "the guest stopped working after its move to $to"
done

echo stop >&7
# A hang guard only: a guest that stops ends its round, checks, powers off.
i=0
while kill -0 $pq 2> /dev/null && [ $i -lt 3000 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 $pq 2> /dev/null && say "the guest did not power off in 300 s"
kill -KILL $pq 2> /dev/null
wait $pq
rc=$?
pq=
sed 's/^/# qemu: /' "$out.err"
[ $rc = 0 ] || { klu_guest_tail "$out" | sed 's/^/# /'; fail "QEMU's exit status $rc"; }
klu_guest_done "$out" > "$tmp/done"
rc=$?
sed 's/^/# /' "$tmp/done"
[ $rc = 0 ] || fail "the guest found an error, or did not end"
pause=$(grep -ao 'pause_max_us=[0-9]*' "$out" | tail -n 1 | sed 's/.*=//')
say "longest blackout $((bo_max / 1000)) us; the guest's longest pause ${pause:-?} us"
# A second for the host's scheduling of the guest's vCPU threads.
[ -n "$pause" ] || fail "the guest reported no pause"
[ "$pause" -le $((bo_max / 1000 + 1000000)) ] ||
	fail "the guest paused for ${pause:-?} us, past the longest blackout and a second"
echo "ok 1 real VM ($cfg): the guest's memory, clocks and disk right through $active -> $other -> $active -> $other"
exit $KSFT_PASS
