#!/usr/bin/env bash
# valgrind memcheck on the vmm command end to end: boot, snapshot, restore, snapshot-info.
# Only in an unsanitized build (sanitizers and valgrind do not mix).
set -uo pipefail
[ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "SKIP: /dev/kvm not usable"; exit 77; }
[ -z "${VMM_SANITIZE:-}" ] || { echo "SKIP: sanitizer build"; exit 77; }
command -v valgrind >/dev/null || { echo "valgrind missing: make deps installs it"; exit 1; }
tmp=$(mktemp -d)
slow=1 # deadlines stretch tenfold in the emulated KVM host (tests/vmhost)
[ "${VMM_TEST_EMULATED:-}" != 1 ] || slow=10
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite)
pass=0 fail=0
run() { # name, command...
  local name=$1; shift
  if "${vg[@]}" "$@" >"$tmp/out" 2>"$tmp/err"; then pass=$((pass+1)); echo "ok   $name"
  else fail=$((fail+1)); echo "FAIL $name (status $?)"; cat "$tmp/err"; fi
}
run hello "$VMM_CLI" run "$VMM_GUEST_DIR/hello.elf"
run counter-control "$VMM_CLI" run --control "$tmp/s" --cmdline "count=5" "$VMM_GUEST_DIR/counter.elf"
# a snapshot taken through the API of a VM running under valgrind, restored under valgrind
"${vg[@]}" "$VMM_CLI" run --control "$tmp/s2" --cmdline "count=100000 interval=2000" \
  "$VMM_GUEST_DIR/counter.elf" >"$tmp/run.out" 2>"$tmp/run.err" &
for _ in $(seq $((100 * slow))); do [ -S "$tmp/s2" ] && break; sleep 0.1; done
"$VMM_CLI" snapshot "$tmp/s2" "$tmp/c.snap" --stop >/dev/null || { fail=$((fail+1)); echo "FAIL snapshot"; }
wait %1 && { pass=$((pass+1)); echo "ok   run+snapshot under valgrind"; } || { fail=$((fail+1)); echo "FAIL run under valgrind"; cat "$tmp/run.err"; }
run snapshot-info "$VMM_CLI" snapshot-info "$tmp/c.snap"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
