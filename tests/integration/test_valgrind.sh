#!/usr/bin/env bash
# valgrind memcheck on the vmm command end to end: boot, snapshot, restore, snapshot-info.
# Only in an unsanitized build (sanitizers and valgrind do not mix).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
[ -z "${VMM_SANITIZE:-}" ] || { echo "SKIP: sanitizer build"; exit 77; }
command -v valgrind >/dev/null || { echo "valgrind missing: make deps installs it"; exit 1; }
use_tmp /tmp/vmm-valgrind.XXXXXX
vg=(valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite)
run() { # name, command...
  local name=$1; shift
  if "${vg[@]}" "$@" >"$tmp/out" 2>"$tmp/err"; then ok "$name"
  else bad "$name (status $?)"; cat "$tmp/err"; fi
}
# --no-sandbox: valgrind runs the program's system calls and its own in one process, and
# a seccomp filter would judge valgrind's (test_cli_sandbox.sh covers the sandbox).
run hello "$VMM_CLI" run --no-sandbox "$VMM_GUEST_DIR/hello.elf"
run counter-control "$VMM_CLI" run --no-sandbox --control "$tmp/s" --cmdline "count=5" "$VMM_GUEST_DIR/counter.elf"
# a snapshot taken through the API of a VM running under valgrind, restored under valgrind
"${vg[@]}" "$VMM_CLI" run --no-sandbox --control "$tmp/s2" --cmdline "count=100000 interval=2000" \
  "$VMM_GUEST_DIR/counter.elf" >"$tmp/run.out" 2>"$tmp/run.err" &
pids+=($!)
wait_socket "$tmp/s2"
"$VMM_CLI" snapshot "$tmp/s2" "$tmp/c.snap" --stop >/dev/null || bad snapshot
wait "${pids[0]}" && ok "run+snapshot under valgrind" || { bad "run under valgrind"; cat "$tmp/run.err"; }
run snapshot-info "$VMM_CLI" snapshot-info "$tmp/c.snap"
summary
