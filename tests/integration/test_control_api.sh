#!/usr/bin/env bash
# The control API of `vmm run --control PATH` and the client verbs: status (with the
# x86-64-v2 CPU model the guest runs on), pause and resume (the guest's output stops and
# restarts), HTTP errors (400/404/405/413), shutdown (exit 0, socket removed); then
# snapshots taken through the socket and brought back with `vmm restore` finish the counter
# with the same output as an uninterrupted run.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
require_cmd curl
g=$VMM_GUEST_DIR
use_tmp /tmp/vmm-control.XXXXXX
lines() { wc -l <"$1"; }

# --- status, pause, resume, errors, shutdown
s=$tmp/s
# A baseline CPU model: the guest runs on it, and vm.info says which it is.
if ! start_vm "$s" "$tmp/out" --cpu x86-64-v2 --cmdline "count=100000 interval=10000" "$g/counter.elf"; then
  bad "vmm run --control starts"
  summary; exit 1
fi
st=$("$VMM_CLI" status "$s")
expect "status running" grep -q '"state": *"running"' <<<"$st"
expect "status shape" grep -q '"vcpus": *1' <<<"$st"
expect "status cmdline" grep -q '"cmdline": *"count=100000 interval=10000"' <<<"$st"
expect "status cpu model" grep -q '"cpu_model": *"x86-64-v2"' <<<"$st"
expect "status version" grep -q '"version": *"libvmm ' <<<"$st"
expect "pause" "$VMM_CLI" pause "$s"
expect "status paused" grep -q '"state": *"paused"' <<<"$("$VMM_CLI" status "$s")"
n1=$(lines "$tmp/out"); sleep 1; n2=$(lines "$tmp/out")
expect "paused guest prints nothing ($n1 -> $n2 lines)" [ "$n1" = "$n2" ]
expect "pause twice" "$VMM_CLI" pause "$s"
expect "resume" "$VMM_CLI" resume "$s"
sleep 1; n3=$(lines "$tmp/out")
expect "resumed guest prints again ($n2 -> $n3 lines)" [ "$n3" -gt "$n2" ]
expect "resume when running" "$VMM_CLI" resume "$s"
expect "status running again" grep -q '"state": *"running"' <<<"$("$VMM_CLI" status "$s")"

expect "GET vm.info 200" [ "$(http "$s" GET vm.info)" = 200 ]
expect "PUT vm.resume 204" [ "$(http "$s" PUT vm.resume)" = 204 ]
expect "malformed JSON 400" [ "$(http "$s" PUT vm.snapshot -d '{"path": ')" = 400 ]
expect "400 body names the error" grep -q '"error":"VMM_EINVAL"' "$tmp/body"
expect "not an object 400" [ "$(http "$s" PUT vm.snapshot -d '[1]')" = 400 ]
expect "unknown key 400" [ "$(http "$s" PUT vm.snapshot -d '{"path":"/x","compres":true}')" = 400 ]
expect "unknown endpoint 404" [ "$(http "$s" GET vm.nope)" = 404 ]
expect "outside the API 404" [ "$(http "$s" GET ../index.html)" = 404 ]
expect "wrong method 405" [ "$(http "$s" POST vm.pause)" = 405 ]
expect "GET on a PUT endpoint 405" [ "$(http "$s" GET vm.shutdown)" = 405 ]
head -c 70000 /dev/zero | tr '\0' ' ' >"$tmp/big"
expect "body over 64 KiB 413" [ "$(http "$s" PUT vm.snapshot --data-binary @"$tmp/big")" = 413 ]
code=$(http "$s" PUT vm.snapshot -H 'Transfer-Encoding: chunked' --data-binary @"$tmp/big")
expect "chunked body over 64 KiB 413" [ "$code" = 413 ]
# vm.migrate-resolve: only an in-doubt migration can be resolved (tests/unit/test_handover.c
# and test_handover_guest.c make them); vm.info says whether the VM is in doubt.
expect "status not in doubt" grep -q '"in_doubt": *false' <<<"$("$VMM_CLI" status "$s")"
expect "resolve not in doubt 409" [ "$(http "$s" PUT vm.migrate-resolve -d '{"action":"run"}')" = 409 ]
expect "resolve 409 says VMM_ESTATE" grep -q '"error":"VMM_ESTATE"' "$tmp/body"
expect "resolve unknown action 400" [ "$(http "$s" PUT vm.migrate-resolve -d '{"action":"maybe"}')" = 400 ]
expect "resolve without a body 400" [ "$(http "$s" PUT vm.migrate-resolve -d '{}')" = 400 ]
"$VMM_CLI" migrate-resolve "$s" discard 2>"$tmp/err"
expect "migrate-resolve not in doubt exits 1" [ $? = 1 ]
expect "migrate-resolve says why" grep -q '^vmm: migrate-resolve: .*not in doubt' "$tmp/err"
expect "migrate-resolve usage exits 2" bash -c '"$0" migrate-resolve "$1" later 2>/dev/null; [ $? = 2 ]' "$VMM_CLI" "$s"
expect "still running after resolve refused" grep -q '"state": *"running"' <<<"$("$VMM_CLI" status "$s")"
expect "error body has error/message/detail" \
  json_has "$tmp/body" 'set(d) == {"error", "message", "detail"}'
# A libvmm error reaches the client's stderr with its detail.
"$VMM_CLI" snapshot "$s" "$tmp/x.snap" --incremental "$tmp/nothing.snap" 2>"$tmp/err"
expect "snapshot error exits 1" [ $? = 1 ]
expect "snapshot error message" grep -q '^vmm: snapshot: invalid argument (.*incremental' "$tmp/err"
expect "still running after the errors" grep -q '"state": *"running"' <<<"$("$VMM_CLI" status "$s")"

expect "shutdown" "$VMM_CLI" shutdown "$s"
wait_exit "$vmpid"
expect "vmm exits 0 after shutdown (got $rc)" [ "$rc" = 0 ]
expect "socket removed" [ ! -e "$s" ]
"$VMM_CLI" pause "$s" 2>"$tmp/err"
expect "pause without a listener exits 1" [ $? = 1 ]
expect "pause without a listener says so" grep -qx "vmm: no VM listening on $s" "$tmp/err"
: >"$tmp/notasocket"
"$VMM_CLI" status "$tmp/notasocket" 2>"$tmp/err"
expect "status on a plain file fails" [ $? = 1 ]
expect "usage error exits 2" bash -c '"$0" pause 2>/dev/null; [ $? = 2 ]' "$VMM_CLI"

# --- snapshots through the socket, restored by vmm restore
# (6 s of counting: at 3 s a machine busy with builds ended the guest before the
# incremental snapshot, which follows a --track one)
args=(--cmdline "count=600 interval=10000" "$g/counter.elf")
"$VMM_CLI" run "${args[@]}" >"$tmp/ref" 2>/dev/null
want=$(grep '^done ' "$tmp/ref")
expect "reference run ends with done" [ -n "$want" ]

# Starts the counter, waits until it is part-way, saves it with `vmm snapshot SOCK FILE
# OPTS... --stop` and checks that the vmm serving SOCK then exits 0 before the guest's end.
snap_run() { # name file [options]
  local name=$1 file=$2; shift 2
  local sock=$tmp/$name.sock out=$tmp/$name.out
  start_vm "$sock" "$out" "${args[@]}" || { bad "$name: start"; return 1; }
  for _ in $(seq $((100 * slow))); do [ "$(lines "$out")" -ge 60 ] && break; sleep 0.1; done
  "$VMM_CLI" snapshot "$sock" "$file" "$@" --stop >"$tmp/$name.summary" 2>"$tmp/$name.err"
  expect "$name: snapshot${*:+ $*} --stop" [ $? = 0 ]
  expect "$name: one-line summary" grep -q "^$file: .* file, .* pages" "$tmp/$name.summary"
  wait_exit "$vmpid"
  expect "$name: vmm exits 0 after --stop (got $rc)" [ "$rc" = 0 ]
  expect "$name: guest was stopped mid-run" bash -c '! grep -q "^done" "$0"' "$out"
}
# vmm restore FILE [opts] must finish the counter exactly like the uninterrupted run.
check_restore() { # name before-output file [restore options]
  local name=$1 before=$2 file=$3; shift 3
  "$VMM_CLI" restore "$@" "$file" >"$tmp/$name.rest" 2>"$tmp/$name.rerr"
  expect "$name: restore${*:+ $*} exits 0" [ $? = 0 ]
  expect "$name: same '$want'" [ "$(grep '^done ' "$tmp/$name.rest")" = "$want" ]
  expect "$name: output continues seamlessly" cmp -s <(cat "$before" "$tmp/$name.rest") "$tmp/ref" ||
    diff <(cat "$before" "$tmp/$name.rest") "$tmp/ref" | head -n 20
}

f=$tmp/plain.snap
snap_run plain "$f"
check_restore plain "$tmp/plain.out" "$f"
check_restore lazy "$tmp/plain.out" "$f" --lazy
# vmm restore --control serves the same API.
"$VMM_CLI" restore --control "$tmp/r.sock" "$f" >"$tmp/r.out" 2>"$tmp/r.err" &
vmpid=$!; pids+=("$vmpid")
wait_socket "$tmp/r.sock"
"$VMM_CLI" status "$tmp/r.sock" >"$tmp/r.status"
expect "restore --control: status" \
  json_has "$tmp/r.status" 'd["state"] == "running" and d["vcpus"] == 1'
"$VMM_CLI" shutdown "$tmp/r.sock" 2>/dev/null  # the guest may have finished on its own
wait_exit "$vmpid"
expect "restore --control: exits 0 (got $rc)" [ "$rc" = 0 ]
expect "restore --control: socket removed" [ ! -e "$tmp/r.sock" ]

"$VMM_CLI" snapshot-info "$f" >"$tmp/info"
expect "snapshot-info valid" [ $? = 0 ]
expect "snapshot-info says valid" [ "$(tail -n1 "$tmp/info")" = valid ]
expect "snapshot-info shape" grep -q '128.0 MiB memory, 1 vCPU$' "$tmp/info"
"$VMM_CLI" snapshot-info --json "$f" >"$tmp/info.json"
expect "snapshot-info --json" json_has "$tmp/info.json" 'd["valid"] and d["vcpus"] == 1'
cp --sparse=always "$f" "$tmp/flipped.snap"
python3 - "$tmp/flipped.snap" <<'EOF'
import os, sys
with open(sys.argv[1], "r+b") as f:
    off = os.path.getsize(sys.argv[1]) // 2
    f.seek(off); b = f.read(1); f.seek(off); f.write(bytes([b[0] ^ 0x40]))
EOF
"$VMM_CLI" snapshot-info "$tmp/flipped.snap" >"$tmp/info"
expect "snapshot-info on a flipped byte exits 1" [ $? = 1 ]
expect "snapshot-info says INVALID" grep -q '^INVALID: ' "$tmp/info"
"$VMM_CLI" snapshot-info /etc/passwd >"$tmp/info"
expect "snapshot-info on a non-snapshot exits 1" [ $? = 1 ]
expect "snapshot-info on a non-snapshot says INVALID" grep -q '^INVALID: ' "$tmp/info"

f=$tmp/zstd.snap
snap_run zstd "$f" --compress
check_restore zstd "$tmp/zstd.out" "$f"
expect "compressed snapshot-info valid" bash -c '"$0" snapshot-info "$1" >/dev/null' "$VMM_CLI" "$f"

f=$tmp/live.snap
snap_run live "$f" --live
check_restore live "$tmp/live.out" "$f"

# An incremental on top of a tracked base; the restore follows the chain.
base=$tmp/base.snap f=$tmp/incr.snap
if start_vm "$tmp/incr.sock" "$tmp/incr.out" "${args[@]}"; then
  for _ in $(seq $((100 * slow))); do [ "$(lines "$tmp/incr.out")" -ge 40 ] && break; sleep 0.1; done
  "$VMM_CLI" snapshot "$tmp/incr.sock" "$base" --track >/dev/null
  expect "incr: base snapshot --track" [ $? = 0 ]
  sleep 0.5
  "$VMM_CLI" snapshot "$tmp/incr.sock" "$f" --incremental "$base" --stop >/dev/null
  expect "incr: snapshot --incremental --stop" [ $? = 0 ]
  wait_exit "$vmpid"
  expect "incr: vmm exits 0 after --stop (got $rc)" [ "$rc" = 0 ]
  "$VMM_CLI" snapshot-info "$f" >"$tmp/info"
  expect "incr: snapshot-info names the parent" grep -qxF "parent    $base" "$tmp/info"
  check_restore incr "$tmp/incr.out" "$f"
else
  bad "incr: start"
fi

summary
