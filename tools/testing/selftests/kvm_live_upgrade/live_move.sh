#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# live_move.sh [SECONDS]: live moves of running VMs on a kvm-live-upgrade host.
#
# vm_compute (2 vCPUs, 4 MiB hashed per round) and vm_irq (2 vCPUs: timer ticks, an
# IPI ring, irqfd MSIs) run on the active core.  Every VM of the host moves to another
# loaded core (its tag written to /sys/kernel/kvm_thin/move), runs there for SECONDS
# (2), and moves back to the original core.  After each move both VMs must be on the
# core moved to, with a last_move that starts with "ok".  Then the programs are told to
# stop (a stop file: they run until the moves are done, however slow the host), and
# both must exit 0 (each guest's results checked by the host, no interrupt lost or
# doubled).
# Skips (exit 4) when kvm_thin is not loaded or fewer than two cores are.  The original
# active core is active again when the test ends, whatever happened.  POSIX sh: it
# runs under busybox.  vm_compute and vm_irq are taken from this script's directory.
#
# Copyright (C) 2026 The kvm-live-upgrade authors.

KSFT_PASS=0
KSFT_FAIL=1
KSFT_SKIP=4

thin=${KLU_SYS:-/sys/kernel/kvm_thin}
dir=$(dirname "$0")
secs=${1:-2}
tmp=
orig=
pids=

say() {
	echo "# $*"
}

skip() {
	echo "ok 1 # SKIP $*"
	exit $KSFT_SKIP
}

fail() {
	echo "not ok 1 live move: $*"
	exit $KSFT_FAIL
}

# Stop what we started, give the active core back, drop the scratch files.
# shellcheck disable=SC2317	# run by the EXIT trap
cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null
	done
	for p in $pids; do
		wait "$p" 2>/dev/null
	done
	if [ -n "$orig" ] && [ "$(cat "$thin/active" 2>/dev/null)" != "$orig" ]; then
		if echo "$orig" > "$thin/active"; then
			say "active core restored: $orig"
		else
			say "could not make $orig the active core again"
		fi
	fi
	if [ -n "$tmp" ]; then
		rm -rf "$tmp"
	fi
}

# show NAME: the output of program NAME, as diagnostics.
show() {
	sed "s/^/# $1: /" "$tmp/$1.out"
}

# vm_of PID: set vm to the id of the VM process PID created, once it is there with a
# vCPU: waited for as long as the process runs, 300 s at most (a guard against a VM that
# never comes, well past any VM's creation on a slow host); fails at once if the process
# has ended.
vm_of() {
	vm=
	n=0
	while [ $n -lt 3000 ]; do
		for d in "$thin"/vms/*; do
			if [ "$(cat "$d/pid" 2>/dev/null)" = "$1" ] &&
			   [ "$(cat "$d/vcpus" 2>/dev/null)" -ge 1 ] 2>/dev/null; then
				vm=${d##*/}
				return 0
			fi
		done
		kill -0 "$1" 2>/dev/null || return 1
		sleep 0.1
		n=$((n + 1))
	done
	return 1
}

# no_vm PID NAME: program NAME made no VM.  Its skip is ours; anything else fails.
no_vm() {
	if kill -0 "$1" 2>/dev/null; then
		fail "$2 (pid $1) made no VM with a vCPU in 300 s"
	fi
	wait "$1"
	rc=$?
	show "$2"
	if [ $rc = $KSFT_SKIP ]; then
		why=$(sed -n 's/^ok 1 # SKIP //p' "$tmp/$2.out" | head -n 1)
		skip "$2: ${why:-skipped}"
	fi
	fail "$2 exited with status $rc before its VM could move"
}

# vms: every VM of the host, as diagnostics.
vms() {
	for d in "$thin"/vms/*; do
		[ -d "$d" ] || continue
		say "VM ${d##*/} pid $(cat "$d/pid") on $(cat "$d/core"), movable: $(cat "$d/movable")," \
			"last move: $(cat "$d/last_move")"
	done
}

# move TAG: move every VM to core TAG; ours must be there, each last_move "ok ...".
move() {
	if ! echo "$1" > "$thin/move"; then
		say "the move to $1 was refused: $(cat "$thin/move")"
		vms
		return 1
	fi
	say "move to $1: $(cat "$thin/move")"
	for id in $vmc $vmi; do
		if ! lm=$(cat "$thin/vms/$id/last_move" 2>/dev/null); then
			say "VM $id ended before its last_move could be read"
			return 1
		fi
		core=$(cat "$thin/vms/$id/core")
		say "VM $id on $core: $lm"
		case $lm in
		ok*) ;;
		*) return 1 ;;
		esac
		[ "$core" = "$1" ] || return 1
	done
}

echo "TAP version 13"
echo "1..1"
case $secs in
''|*[!0-9]*) fail "usage: $0 [SECONDS]" ;;
esac

if [ ! -d "$thin" ]; then
	say "no $thin"
	skip "kvm_thin is not loaded"
fi
loaded=
ncores=0
for d in "$thin"/cores/*; do
	[ -d "$d" ] || continue
	loaded="$loaded${loaded:+ }${d##*/}"
	ncores=$((ncores + 1))
done
if [ "$ncores" -lt 2 ]; then
	skip "a live move needs two loaded cores, $ncores loaded (${loaded:-none}):" \
		"load a second core pair, e.g. kvm-upgrade load <tag>"
fi
active=$(cat "$thin/active")
other=
for c in $loaded; do
	if [ "$c" != "$active" ]; then
		other=$c
		break
	fi
done
if [ -z "$active" ] || [ -z "$other" ]; then
	fail "no active core among $loaded"
fi
for p in vm_compute vm_irq; do
	[ -x "$dir/$p" ] || fail "$dir/$p is missing"
done

orig=$active
tmp=$(mktemp -d) || fail "mktemp -d failed"
trap cleanup EXIT
trap 'fail "interrupted by a signal"' HUP INT TERM
say "cores loaded: $loaded; active: $orig; moving to $other, $secs s there, and back"

"$dir/vm_compute" -c 2 -m 4 -u "$tmp/stop" > "$tmp/vm_compute.out" 2>&1 &
pc=$!
pids=$pc
"$dir/vm_irq" -c 2 -u "$tmp/stop" > "$tmp/vm_irq.out" 2>&1 &
pi=$!
pids="$pc $pi"
vm_of $pc || no_vm $pc vm_compute
vmc=$vm
vm_of $pi || no_vm $pi vm_irq
vmi=$vm
say "vm_compute: VM $vmc on $(cat "$thin/vms/$vmc/core"); vm_irq: VM $vmi on $(cat "$thin/vms/$vmi/core")"

ok=1
move "$other" || ok=0
if [ $ok = 1 ]; then
	sleep "$secs"
	move "$orig" || ok=0
fi
: > "$tmp/stop"
[ $ok = 1 ] || fail "a move of the running VMs failed ($orig -> $other -> $orig)"

wait $pc
rc_c=$?
wait $pi
rc_i=$?
pids=
show vm_compute
show vm_irq
[ $rc_c = 0 ] || fail "vm_compute exited with status $rc_c after the moves"
[ $rc_i = 0 ] || fail "vm_irq exited with status $rc_i after the moves"
echo "ok 1 live move: vm_compute and vm_irq ran right through $orig -> $other -> $orig"
exit $KSFT_PASS
