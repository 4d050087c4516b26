#!/usr/bin/env bash
# The in-doubt hand-over from the shell: `vmm run --control S` migrates to `vmm receive
# --control D` through a proxy (test_handover_guest's proxy mode) that cuts the link just
# before GO. Both sides stay paused: `vmm migrate` exits 3 saying "in doubt", both report
# in_doubt, resume is refused; `vmm migrate-resolve D run` and `vmm migrate-resolve S
# discard` end it: the source vmm exits 0, the destination finishes the counter, and source
# then destination output is exactly the uninterrupted run's.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
require_cmd curl
g=$VMM_GUEST_DIR
use_tmp /tmp/vmm-handover.XXXXXX
args=(--cmdline "count=150 interval=20000" "$g/counter.elf")
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

"$VMM_CLI" run "${args[@]}" >"$tmp/ref" 2>/dev/null
expect "reference run ends with done" grep -q '^done ' "$tmp/ref"

dport=$(free_port)
"$VMM_CLI" receive --control "$tmp/d.sock" "127.0.0.1:$dport" >"$tmp/dst" 2>"$tmp/dst.err" &
rxpid=$!
pids+=("$rxpid")
wait_line "$tmp/dst.err" "receiving on"
"$VMM_BINARY_DIR/tests/test_handover_guest" proxy "$dport" cut to-dst go >"$tmp/proxy" &
pids+=("$!")
for _ in $(seq $((50 * slow))); do [ -s "$tmp/proxy" ] && break; sleep 0.1; done
pport=$(head -n1 "$tmp/proxy")
expect "proxy listens" [ -n "$pport" ]

s=$tmp/s.sock
if ! start_vm "$s" "$tmp/src" "${args[@]}"; then
  bad "vmm run --control starts"
  summary; exit 1
fi
srcpid=$vmpid
wait_line "$tmp/src" "count 5"
"$VMM_CLI" migrate "$s" "127.0.0.1:$pport" 2>"$tmp/mig.err"
rc=$?
expect "vmm migrate exits 3 (got $rc)" [ "$rc" = 3 ]
expect "vmm migrate says in doubt" grep -q "in doubt" "$tmp/mig.err"
expect "migration state in-doubt" grep -q '"state": *"in-doubt"' \
  <<<"$(http "$s" GET vm.migration >/dev/null; cat "$tmp/body")"
expect "source in doubt" grep -q '"in_doubt": *true' <<<"$("$VMM_CLI" status "$s")"
expect "source paused" grep -q '"state": *"paused"' <<<"$("$VMM_CLI" status "$s")"
expect "resume refused 409" [ "$(http "$s" PUT vm.resume)" = 409 ]
wait_socket "$tmp/d.sock"
expect "destination says in doubt" grep -q "in doubt" "$tmp/dst.err"
expect "destination in doubt" grep -q '"in_doubt": *true' <<<"$("$VMM_CLI" status "$tmp/d.sock")"
expect "destination never started" grep -q '"state": *"created"' \
  <<<"$("$VMM_CLI" status "$tmp/d.sock")"
n1=$(wc -l <"$tmp/src"); sleep 1; n2=$(wc -l <"$tmp/src")
expect "nothing runs while in doubt ($n1 -> $n2 lines)" \
  bash -c '[ "$0" = "$1" ] && [ ! -s "$2" ]' "$n1" "$n2" "$tmp/dst"

expect "resolve destination run" "$VMM_CLI" migrate-resolve "$tmp/d.sock" run
expect "resolve source discard" "$VMM_CLI" migrate-resolve "$s" discard
wait_exit "$srcpid"
expect "source vmm exits 0 after discard (got $rc)" [ "$rc" = 0 ]
wait_exit "$rxpid" $((60 * slow))
expect "destination exits 0 at the guest's end (got $rc)" [ "$rc" = 0 ]
cat "$tmp/src" "$tmp/dst" | tr -d '\r' >"$tmp/all"
tr -d '\r' <"$tmp/ref" >"$tmp/ref.n"
expect "every count exactly once across both sides" cmp -s "$tmp/all" "$tmp/ref.n" ||
  { show "$tmp/src"; show "$tmp/dst"; show "$tmp/dst.err"; }
summary
