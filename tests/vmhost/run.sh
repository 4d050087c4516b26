#!/usr/bin/env bash
# tests/vmhost/run.sh [options] -- CMD [ARG]...
# Runs CMD, in the current directory, inside the emulated KVM host: a QEMU virtual machine
# in software emulation (TCG, `-cpu max`: an AMD CPU with SVM and nested paging) whose
# Debian kernel loads kvm_amd, so /dev/kvm there has real hardware-virtualization semantics
# on any Linux machine, with or without a /dev/kvm of its own. The VM sees this machine's
# / over 9p (writable, as root) but has its own tmpfs on /tmp, /run and /dev/shm; the
# current directory, this checkout and every --share DIR are brought back over those, so
# CMD works wherever the checkout is. CMD's stdout and stderr come out here; the exit
# status is CMD's, 124 if --timeout ran out, 125 if the VM stopped before CMD finished
# (the console's tail is printed then). VMM_TEST_EMULATED=1 is set for CMD, so tests can
# scale sizes and deadlines (never what they check) to a host that is ~3-20x slower.
#   --mem SIZE (8G)  --smp N (2)  --share DIR  --env NAME=VALUE  --timeout SECONDS
#   --console (kernel console on stderr)  --keep (keep the run folder)
# Environment: VMM_VMHOST_DIR (see build.sh), VMM_VMHOST_APPEND (more kernel arguments,
# e.g. vmhost.nokeeper, or loglevel=7 with --console).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
D=${VMM_VMHOST_DIR:-/var/tmp/libvmm-vmhost}
MEM=8G SMP=2 CONSOLE= KEEP= TIMEOUT=0 ENVS=() SHARES=("$PWD" "$SRC")
usage() { echo "usage: run.sh [--mem SIZE] [--smp N] [--share DIR]... [--env N=V]... [--timeout S] [--console] [--keep] -- CMD..." >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--mem) MEM=$2; shift 2;;
	--smp) SMP=$2; shift 2;;
	--share) SHARES+=("$(cd "$2" && pwd)"); shift 2;;
	--env) ENVS+=("$2"); shift 2;;
	--timeout) TIMEOUT=$2; shift 2;;
	--console) CONSOLE=1; shift;;
	--keep) KEEP=1; shift;;
	--) shift; break;;
	*) usage;;
	esac
done
[ $# -gt 0 ] || usage
bash "$HERE/build.sh" "$D"
QEMU=$D/qemu/usr/bin/qemu-system-x86_64

mkdir -p "$D/runs"
RUN=$(mktemp -d "$D/runs/XXXXXX")
SHARES+=("$RUN")
printf '%s\n' "${SHARES[@]}" >"$RUN/shares"
{
	echo '#!/bin/bash'
	printf 'cd %q || exit 125\n' "$PWD"
	for v in PATH HOME LANG LC_ALL TZ TERM; do [ -z "${!v+x}" ] || printf 'export %s=%q\n' "$v" "${!v}"; done
	# The project's own settings (VMM_*, sanitizer and cmocka options) pass through.
	while IFS='=' read -r -d '' name value; do
		case $name in VMM_*|CMOCKA_*|ASAN_OPTIONS|UBSAN_OPTIONS|TSAN_OPTIONS|CTEST_*)
			printf 'export %s=%q\n' "$name" "$value";; esac
	done < <(env -0)
	echo 'export VMM_TEST_EMULATED=1'
	for e in ${ENVS[@]+"${ENVS[@]}"}; do printf 'export %q\n' "$e"; done
	printf 'exec'; printf ' %q' "$@"; echo
} >"$RUN/cmd.sh"
chmod +x "$RUN/cmd.sh"

# CMD's output goes through FIFOs copied by cat, so it lands on our own stdout and stderr
# (QEMU opening /proc/self/fd/1 itself would not share their offset). Each FIFO is held
# open read-write here until QEMU is gone, so the cats always see EOF.
mkfifo "$RUN/out" "$RUN/err" "$RUN/con"
exec 3<>"$RUN/out" 4<>"$RUN/err" 5<>"$RUN/con"
cat "$RUN/out" 3>&- 4>&- 5>&- &
cat "$RUN/err" >&2 3>&- 4>&- 5>&- &
SERIAL="file:$RUN/console.log"
[ -z "$CONSOLE" ] || { tee "$RUN/console.log" <"$RUN/con" >&2 3>&- 4>&- 5>&- & SERIAL=file:$RUN/con; }
# The tasks dump (init) is taken 2 minutes before --timeout runs out.
DUMP_AT=
[ "$TIMEOUT" -le 240 ] || DUMP_AT="vmhost.dump=$((TIMEOUT - 120))"
"$QEMU" -L "$D/qemu/usr/share/qemu" -L "$D/qemu/usr/share/seabios" \
	-nodefaults -display none -no-reboot \
	-accel tcg,thread=multi -cpu max -smp "$SMP" -m "$MEM" \
	-kernel "$D/vmlinux" -initrd "$D/initrd.img" \
	-append "console=ttyS0 quiet panic=-1 mitigations=off tsc=reliable vmhost.run=$RUN $DUMP_AT ${VMM_VMHOST_APPEND:-}" \
	-serial "$SERIAL" -monitor none -pidfile "$RUN/qemu.pid" \
	-virtfs local,path=/,mount_tag=hostroot,security_model=none,multidevs=remap \
	-device virtio-serial-pci \
	-chardev file,id=out,path="$RUN/out" -device virtserialport,chardev=out,name=out \
	-chardev file,id=err,path="$RUN/err" -device virtserialport,chardev=err,name=err \
	</dev/null 3>&- 4>&- 5>&- &
qemu=$!
cleanup() {
	kill "$qemu" 2>/dev/null || true
	[ -n "$KEEP" ] || rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The watchdog ends the VM when --timeout runs out, or when the host's heartbeat (init
# writes it every 10 s) has stood still for VMM_VMHOST_FROZEN seconds (default 300): an
# emulated host that froze would otherwise hold the rest of the run until the timeout.
frozen_after=${VMM_VMHOST_FROZEN:-300}
watch() {
	local end=$(($(date +%s) + TIMEOUT)) beat=0 last= now
	while sleep 10; do
		if [ "$TIMEOUT" -gt 0 ] && [ "$(date +%s)" -ge "$end" ]; then
			touch "$RUN/timedout"; kill "$qemu"; return
		fi
		now=$(cat "$RUN/heartbeat" 2>/dev/null) || now=
		if [ -n "$now" ] && [ "$now" = "$last" ]; then beat=$((beat + 10)); else beat=0; fi
		last=$now
		if [ "$beat" -ge "$frozen_after" ]; then
			echo "$beat" >"$RUN/frozen"; kill "$qemu"; return
		fi
	done
}
watch 3>&- 4>&- 5>&- >/dev/null 2>&1 &
watchdog=$!
wait "$qemu" || true
# The watchdog's sleep first: killing only its shell would leave the sleep running on.
{ pkill -P "$watchdog" sleep; kill "$watchdog"; } 2>/dev/null || true
exec 3>&- 4>&- 5>&-
wait 2>/dev/null || true
if [ -f "$RUN/rc" ]; then
	exit "$(cat "$RUN/rc")"
fi
if [ -f "$RUN/timedout" ]; then
	echo "vmhost: timed out after $TIMEOUT s: $*; console log:" >&2
	rc=124
elif [ -f "$RUN/frozen" ]; then
	echo "vmhost: the emulated host froze (no heartbeat for $(cat "$RUN/frozen") s, since" \
		"$(cut -d' ' -f1 "$RUN/heartbeat") s of uptime): $*; console log:" >&2
	rc=125
else
	echo "vmhost: the VM stopped before the command finished: $*; console log:" >&2
	rc=125
fi
# A CI log keeps the tail, where a panic's register dump and call trace push out its reason
# and the task it hit: print the first kernel complaint's head before the tail.
first=$(grep -n -m1 -E 'Kernel panic|BUG:|Oops|general protection|WARNING:|watchdog:' \
	"$RUN/console.log" 2>/dev/null | cut -d: -f1) || true
if [ -n "$first" ]; then
	sed -n "$((first > 3 ? first - 3 : 1)),$((first + 12))p" "$RUN/console.log" >&2
	echo "vmhost: [...]" >&2
fi
tail -n 40 "$RUN/console.log" >&2 2>/dev/null || true
# Last, where a CI log's tail keeps it: what the tests waited on before the timeout.
[ ! -f "$RUN/tasks" ] || cat "$RUN/tasks" >&2
exit $rc
