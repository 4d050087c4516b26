#!/usr/bin/env bash
# tests/vmhost/ctest.sh MODE BUILD [CTEST ARG]...: runs a build tree's tests where they can
# run. Tests labelled `kvm` run guests; the rest need no /dev/kvm.
#   auto       where /dev/kvm opens, every test here; elsewhere the others here and the
#              `kvm` ones in the emulated KVM host (run.sh), saying so first
#   emulated   the `kvm` tests in the emulated KVM host, whatever this machine has
#   native     where /dev/kvm opens, every test here; elsewhere only the others, naming
#              the `kvm` tests this pass leaves out (the sanitizer passes: instrumented
#              code under TCG emulation would not fit the time CI has)
# VMM_VMHOST_TIMEOUT (seconds, default 3000) bounds the emulated host's whole run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MODE=${1:?usage: ctest.sh auto|emulated|native BUILD [CTEST ARG]...}
BUILD=$(cd "${2:?build folder}" && pwd)
shift 2
cd "$BUILD"

. "$HERE/kvm_usable.sh"
# A CI log keeps only its head and tail: repeat each failed case's own message last, so the
# cause survives the cut in the middle.
recap() {
	local rc=$1
	[ "$rc" -eq 0 ] && return 0
	echo "=== recap of the failures (from Testing/Temporary/LastTest.log) ==="
	grep -a -B12 -A2 -E '^\[  (ERROR|FAILED)   ?\]|^receive child:|Failure!' \
		Testing/Temporary/LastTest.log 2>/dev/null | grep -av '^\[       OK \]' | tail -150 || true
	return "$rc"
}
# The names of the tests a ctest log reports as finished (passed or failed), one per line.
finished_tests() {
	sed -n -E 's/^ *[0-9]+\/[0-9]+ +Test +#[0-9]+: ([^ ]+) \.+.*(Passed|\*\*\*).*/\1/p' "$1"
}
emulated() {
	local rc=0 log="$BUILD/Testing/vmhost-ctest.log" done_re
	mkdir -p "$BUILD/Testing"
	# The stock Linux guest's packages are fetched here: the emulated host has no network.
	# A failure is reported by the test that needs them (integration/test_linux_boot).
	bash "$HERE/../guests/linux/build.sh" >/dev/null || true
	"$HERE/run.sh" --share "$BUILD" --timeout "${VMM_VMHOST_TIMEOUT:-3000}" -- \
		ctest --output-on-failure -L '^kvm$' "$@" | tee "$log" || rc=${PIPESTATUS[0]}
	# 125: the emulated host itself died (its kernel panicked: TCG's rare faults, see the
	# README) before ctest finished. That says nothing of libvmm, so the tests it had not
	# finished run once more in a fresh one; those it finished keep their result, and a
	# second death is a failure.
	if [ "$rc" -eq 125 ]; then
		done_re=$(finished_tests "$log" | paste -sd '|')
		echo "=== vmhost: the emulated host died before ctest finished; the tests it had" \
			"not finished run again in a new one (finished: ${done_re:-none}) ==="
		rc=0
		if grep -q -E '\*\*\*(Failed|Timeout|Exception)' "$log"; then rc=1; fi
		recap $rc || true
		"$HERE/run.sh" --share "$BUILD" --timeout "${VMM_VMHOST_TIMEOUT:-3000}" -- \
			ctest --output-on-failure -L '^kvm$' ${done_re:+-E "^($done_re)\$"} "$@" || rc=$?
	fi
	recap $rc
}

case $MODE in
auto|native)
	if kvm_usable; then
		exec ctest --output-on-failure "$@"
	fi
	why="/dev/kvm cannot be opened here ($( [ -e /dev/kvm ] && echo 'no permission' || echo 'no such device'))"
	if [ "$MODE" = native ]; then
		echo "check: $why: this pass leaves out the KVM tests:" \
			"$(ctest -N -L '^kvm$' "$@" | sed -n 's/^ *Test *#[0-9]*: //p' | tr '\n' ' ')"
		rc=0
		ctest --output-on-failure -LE '^kvm$' "$@" || rc=$?
		recap $rc
		exit
	fi
	echo "check: $why: the KVM tests run in the emulated KVM host (tests/vmhost: QEMU TCG with SVM, kvm_amd)"
	rc=0
	ctest --output-on-failure -LE '^kvm$' "$@" || recap $? || rc=$?
	emulated "$@" || rc=$?
	exit $rc
	;;
emulated)
	echo "check: the KVM tests run in the emulated KVM host (tests/vmhost: QEMU TCG with SVM, kvm_amd)"
	emulated "$@"
	;;
*)
	echo "ctest.sh: unknown mode $MODE" >&2
	exit 2
	;;
esac
