#!/usr/bin/env bash
# Live migration from the shell: `vmm receive ADDR:PORT` on one side, `vmm run --control S`
# on the other, `vmm migrate S ADDR:PORT` in between. memcheck keeps rewriting 96 MiB at
# 200 MB/s while it moves: source and destination outputs together must hold every
# generation once and no CORRUPT. Also: the vm.migrate API's errors (400/409), a refused
# connection (the VM runs on, a retry succeeds), zstd over 2 connections to [::1], and a
# Ctrl-C on `vmm migrate` that cancels a slow migration (the VM runs on to its end).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
require_cmd curl
g=$VMM_GUEST_DIR
use_tmp /tmp/vmm-migrate.XXXXXX
# In the emulated KVM host (tests/vmhost) deadlines stretch tenfold, and memcheck rewrites a
# sixth of the memory at a 25th of the rate: the link there is about ten times slower, so
# pre-copy still chases the guest. Every command there (curl, python) takes a second or
# more (python's start alone), so the guests that wait through the API checks live three
# times as many generations, to outlast them and the migration that follows.
mc="mem=96" rate=200 capped=20 retry_gens=16 cancel_gens=12
[ "${VMM_TEST_EMULATED:-}" != 1 ] || mc="mem=16" rate=8 capped=2 retry_gens=48 cancel_gens=40
# A TCP port nobody listens on right now, on the loopback address given.
free_port() { # addr
  python3 -c 'import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam); s.bind((sys.argv[1], 0)); print(s.getsockname()[1])' "$1"
}
# vmm receive ADDR:PORT in the background, output to OUT; sets $rxpid. Waits (10 s at
# most) for its "receiving on" line and for the port to listen.
start_receiver() { # addr port out [vmm receive options]
  local addr=$1 port=$2 out=$3 hp=$1:$2
  shift 3
  [[ $addr == *:* ]] && hp="[$addr]:$port"
  "$VMM_CLI" receive "$@" "$hp" >"$out" 2>"$out.err" &
  rxpid=$!
  pids+=("$rxpid")
  for _ in $(seq $((100 * slow))); do
    grep -qxF "vmm: receiving on $hp" "$out.err" 2>/dev/null &&
      [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] && return 0
    sleep 0.1
  done
  echo "receiver on $hp never listened:"; show "$out.err"
  return 1
}
migration_state() { # sock
  http "$1" GET vm.migration >/dev/null &&
    python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["state"])' "$tmp/body"
}
# Source and destination output together: memcheck's header, generations 1..N each exactly
# once in order, no CORRUPT, and the end. A line may be split between the two files.
check_transcript() { # name gens src dst
  local name=$1 gens=$2
  expect "$name: destination ends with 'memcheck done ok'" \
    [ "$(tail -n1 "$4" | tr -d '\r')" = "memcheck done ok" ]
  cat "$3" "$4" >"$tmp/$name.all"
  expect "$name: no CORRUPT" bash -c '! grep -q CORRUPT "$0"' "$tmp/$name.all"
  expect "$name: every generation 1..$gens exactly once" python3 -c '
import re, sys
lines = open(sys.argv[1]).read().splitlines()
gens = [int(m.group(1)) for m in map(re.compile(r"memcheck gen (\d+) ok$").match, lines) if m]
sys.exit(gens != list(range(1, int(sys.argv[2]) + 1)) or lines.count("memcheck done ok") != 1)
' "$tmp/$name.all" "$gens"
  expect "$name: source stopped before the end" bash -c '! grep -q "done ok" "$0"' "$3"
}

# --- the acceptance scenario: memcheck moves while it rewrites its memory
port=$(free_port 127.0.0.1)
s=$tmp/s1
if start_receiver 127.0.0.1 "$port" "$tmp/rx1.out" --control "$tmp/rx1.sock" &&
   start_vm "$s" "$tmp/src1.out" --memory 256M --cmdline "$mc gens=30 rate=$rate" \
     "$g/memcheck.elf"; then
  src=$vmpid rx=$rxpid
  wait_line "$tmp/src1.out" '^memcheck gen 2 ok' || bad "basic: memcheck reaches gen 2"
  "$VMM_CLI" migrate "$s" "127.0.0.1:$port" --json >"$tmp/mig1.json" 2>"$tmp/mig1.err"
  rc=$?
  # First, while the guest surely still runs there: vmm receive opens its control socket
  # once the VM has arrived, which may be just after the source has let go.
  wait_socket "$tmp/rx1.sock" 5
  "$VMM_CLI" status "$tmp/rx1.sock" >"$tmp/rx1.status" 2>"$tmp/rx1.status.err"
  expect "basic: vmm migrate --json exits 0 (got $rc)" [ "$rc" = 0 ] || show "$tmp/mig1.err"
  expect "basic: stdout is one JSON document, completed" \
    json_has "$tmp/mig1.json" 'd["state"] == "completed" and d["final"] is True'
  expect "basic: total.rounds >= 2" json_has "$tmp/mig1.json" 'd["total"]["rounds"] >= 2'
  expect "basic: numeric total.downtime_ms" json_has "$tmp/mig1.json" \
    'type(d["total"]["downtime_ms"]) in (int, float) and d["total"]["downtime_ms"] > 0'
  expect "basic: one object per round, the last one final" json_has "$tmp/mig1.json" \
    'len(d["rounds"]) == d["total"]["rounds"] and d["rounds"][-1]["final"] and
     all(set(r) >= {"round", "pages", "zero_pages", "wire_bytes", "duration_ms",
                    "bandwidth_mbps", "dirty_rate_mbps", "remaining_bytes",
                    "expected_downtime_ms", "throttle_pct"} for r in d["rounds"])'
  expect "basic: totals complete" json_has "$tmp/mig1.json" \
    'set(d["total"]) >= {"rounds", "total_ms", "downtime_ms", "expected_downtime_ms", "pages",
     "zero_pages", "raw_bytes", "wire_bytes", "compression_ratio", "max_throttle_pct",
     "state_bytes"} and "error" not in d'
  wait_exit "$src"
  expect "basic: source vmm run exits 0 (got $rc)" [ "$rc" = 0 ] || show "$tmp/src1.out.err"
  expect "basic: source socket removed" [ ! -e "$s" ]
  expect "basic: source says where the VM went" \
    grep -qxF "vmm: VM migrated to 127.0.0.1:$port" "$tmp/src1.out.err"
  expect "basic: vmm receive --control serves the arrived VM" json_has "$tmp/rx1.status" \
    'd["state"] == "running" and d["cmdline"] == "'"$mc gens=30 rate=$rate"'" and
     d["memory_bytes"] == 256 << 20' || { show "$tmp/rx1.status"; show "$tmp/rx1.status.err"; }
  wait_exit "$rx" 60
  expect "basic: vmm receive exits 0 with the guest (got $rc)" [ "$rc" = 0 ] ||
    show "$tmp/rx1.out.err"
  check_transcript basic 30 "$tmp/src1.out" "$tmp/rx1.out"
else
  bad "basic: start receiver and source"
fi

# --- usage errors
expect "receive without an address: usage, 2" \
  bash -c '"$0" receive 2>/dev/null; [ $? = 2 ]' "$VMM_CLI"
expect "receive with an unbracketed IPv6 address: 2" \
  bash -c '"$0" receive ::1:4000 2>/dev/null; [ $? = 2 ]' "$VMM_CLI"
expect "migrate without a destination: usage, 2" \
  bash -c '"$0" migrate /nonexistent 2>/dev/null; [ $? = 2 ]' "$VMM_CLI"
expect "migrate --compress lz4: 2" \
  bash -c '"$0" migrate /x 127.0.0.1:1 --compress lz4 2>/dev/null; [ $? = 2 ]' "$VMM_CLI"
expect "migrate --connections 17: 2" \
  bash -c '"$0" migrate /x 127.0.0.1:1 --connections 17 2>/dev/null; [ $? = 2 ]' "$VMM_CLI"
"$VMM_CLI" migrate "$tmp/nothing" 127.0.0.1:1 2>"$tmp/err"
expect "migrate without a listener exits 1" [ $? = 1 ]
expect "migrate without a listener says so" grep -qxF "vmm: no VM listening on $tmp/nothing" "$tmp/err"

# --- API errors; a refused connection leaves the VM running; a retry with zstd over two
# connections (to [::1] when this host has IPv6 loopback) succeeds
addr=127.0.0.1
python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null && addr=::1
s=$tmp/s2
if start_vm "$s" "$tmp/src2.out" --memory 256M --cmdline "$mc gens=$retry_gens rate=$rate" \
     "$g/memcheck.elf"; then
  src=$vmpid
  # The guest waits, paused, through the API checks: under a loaded emulated host they take
  # longer than its generations would last (the CI run that found it saw it end first).
  wait_line "$tmp/src2.out" '^memcheck gen 1 ok' || bad "refused: memcheck reaches gen 1"
  expect "api: pause for the checks" "$VMM_CLI" pause "$s"
  expect "api: vm.migration idle at first" [ "$(migration_state "$s")" = idle ]
  expect "api: unknown key 400" \
    [ "$(http "$s" PUT vm.migrate -d '{"destination":"127.0.0.1:1","bandwith_mbps":5}')" = 400 ]
  expect "api: 400 names the key" grep -q 'unknown key \\"bandwith_mbps\\"' "$tmp/body"
  expect "api: no destination 400" [ "$(http "$s" PUT vm.migrate -d '{"downtime_ms":10}')" = 400 ]
  expect "api: unbracketed IPv6 destination 400" \
    [ "$(http "$s" PUT vm.migrate -d '{"destination":"::1:5000"}')" = 400 ]
  expect "api: port 0 400" [ "$(http "$s" PUT vm.migrate -d '{"destination":"h:0"}')" = 400 ]
  expect "api: connections 0 400" \
    [ "$(http "$s" PUT vm.migrate -d '{"destination":"h:1","connections":0}')" = 400 ]
  expect "api: compress lz4 400" \
    [ "$(http "$s" PUT vm.migrate -d '{"destination":"h:1","compress":"lz4"}')" = 400 ]
  expect "api: auto_converge 1 400" \
    [ "$(http "$s" PUT vm.migrate -d '{"destination":"h:1","auto_converge":1}')" = 400 ]
  expect "api: GET vm.migrate 405" [ "$(http "$s" GET vm.migrate)" = 405 ]
  expect "api: cancel with no migration 409" [ "$(http "$s" PUT vm.migrate-cancel)" = 409 ]
  expect "api: resume after the checks" "$VMM_CLI" resume "$s"
  dead=$(free_port 127.0.0.1)
  "$VMM_CLI" migrate "$s" "127.0.0.1:$dead" >"$tmp/mig2.out" 2>"$tmp/mig2.err"
  rc=$?
  expect "refused: vmm migrate exits 1 (got $rc)" [ "$rc" = 1 ]
  expect "refused: the error on stderr" grep -q '^vmm: migrate: the peer closed the connection or failed (connect' "$tmp/mig2.err" ||
    show "$tmp/mig2.err"
  expect "refused: nothing on stdout" [ ! -s "$tmp/mig2.out" ]
  expect "refused: vm.migration failed" [ "$(migration_state "$s")" = failed ]
  expect "refused: error object" json_has "$tmp/body" 'd["error"]["error"] == "VMM_EPEER"'
  if ! expect "refused: source still running" \
    grep -q '"state": *"running"' <<<"$("$VMM_CLI" status "$s")"; then
    show "$tmp/src2.out.err"; tail -3 "$tmp/src2.out"
  fi
  n1=$(grep -c '^memcheck gen' "$tmp/src2.out")
  expect "refused: guest keeps going (gen $((n1 + 1)) follows)" \
    wait_line "$tmp/src2.out" "^memcheck gen $((n1 + 1)) ok"
  port=$(free_port "$addr")
  hp=$addr:$port; [ "$addr" = ::1 ] && hp="[::1]:$port"
  if ! kill -0 "$src" 2>/dev/null; then
    bad "retry: the source ended before it (see above)"
  elif start_receiver "$addr" "$port" "$tmp/rx2.out"; then
    rx=$rxpid
    "$VMM_CLI" migrate "$s" "$hp" --compress zstd --connections 2 >"$tmp/mig2.out" \
      2>"$tmp/mig2.err"
    rc=$?
    expect "retry to $hp, zstd, 2 connections: exits 0 (got $rc)" [ "$rc" = 0 ] ||
      show "$tmp/mig2.err"
    expect "retry: summary on stdout" \
      grep -qE "^migrated to \\[?$addr\\]?:$port in [0-9.]+ ms: [0-9]+ rounds, .* on the wire, compression ratio [0-9.]+, downtime [0-9.]+ ms$" \
      "$tmp/mig2.out" || show "$tmp/mig2.out"
    expect "retry: one line per round on stderr (not a terminal)" \
      grep -q '^round 0: .* pages' "$tmp/mig2.err"
    expect "retry: the final round too" grep -q '^round [0-9]* (final, guest paused): ' "$tmp/mig2.err"
    wait_exit "$src"
    expect "retry: source exits 0 (got $rc)" [ "$rc" = 0 ]
    expect "retry: source socket removed" [ ! -e "$s" ]
    wait_exit "$rx" 60
    expect "retry: vmm receive exits 0 (got $rc)" [ "$rc" = 0 ] || show "$tmp/rx2.out.err"
    check_transcript retry "$retry_gens" "$tmp/src2.out" "$tmp/rx2.out"
  else
    bad "retry: start receiver"
  fi
else
  bad "refused: start source"
fi

# --- Ctrl-C on a migration held to 20 MB/s (2 emulated): canceled, the VM runs on to its end, the
# receiver gives up with an error
port=$(free_port 127.0.0.1)
s=$tmp/s3
if start_receiver 127.0.0.1 "$port" "$tmp/rx3.out" &&
   start_vm "$s" "$tmp/src3.out" --memory 256M --cmdline "$mc gens=$cancel_gens rate=$rate" \
     "$g/memcheck.elf"; then
  src=$vmpid rx=$rxpid
  "$VMM_CLI" receive "127.0.0.1:$port" >/dev/null 2>"$tmp/err"
  expect "receive on a port in use exits 1" [ $? = 1 ]
  expect "receive on a port in use says why" grep -q '^vmm: receive: .*bind' "$tmp/err"
  wait_line "$tmp/src3.out" '^memcheck gen 1 ok' || bad "cancel: memcheck reaches gen 1"
  "$VMM_CLI" migrate "$s" "127.0.0.1:$port" --bandwidth $capped >"$tmp/mig3.out" 2>"$tmp/mig3.err" &
  mig=$!
  pids+=("$mig")
  for _ in $(seq $((50 * slow))); do [ "$(migration_state "$s")" = running ] && break; sleep 0.1; done
  expect "cancel: vm.migration running" [ "$(migration_state "$s")" = running ]
  expect "cancel: a second vm.migrate 409" \
    [ "$(http "$s" PUT vm.migrate -d "{\"destination\":\"127.0.0.1:$port\"}")" = 409 ]
  expect "cancel: pause during the migration 409" [ "$(http "$s" PUT vm.pause)" = 409 ]
  expect "cancel: resume during the migration 409" [ "$(http "$s" PUT vm.resume)" = 409 ]
  expect "cancel: snapshot during the migration 409" \
    [ "$(http "$s" PUT vm.snapshot -d "{\"path\":\"$tmp/x.snap\"}")" = 409 ]
  expect "cancel: status still answers" grep -q '"state": *"running"' <<<"$("$VMM_CLI" status "$s")"
  sleep 1
  kill -INT "$mig"
  wait_exit "$mig" 20
  expect "cancel: vmm migrate exits 1 after SIGINT (got $rc)" [ "$rc" = 1 ]
  expect "cancel: says canceled" grep -q '^vmm: migrate: canceled' "$tmp/mig3.err" ||
    show "$tmp/mig3.err"
  expect "cancel: vm.migration canceled" [ "$(migration_state "$s")" = canceled ]
  expect "cancel: source still running" \
    grep -q '"state": *"running"' <<<"$("$VMM_CLI" status "$s")"
  wait_exit "$rx" 20
  expect "cancel: vmm receive exits non-zero (got $rc)" [ "$rc" != 0 ] && [ "$rc" != timeout ]
  expect "cancel: vmm receive says why" grep -q '^vmm: receive: ' "$tmp/rx3.out.err"
  wait_exit "$src" 60
  expect "cancel: source runs the guest to its end, exit 0 (got $rc)" [ "$rc" = 0 ]
  expect "cancel: source ends with 'memcheck done ok'" \
    [ "$(tail -n1 "$tmp/src3.out")" = "memcheck done ok" ]
  expect "cancel: no CORRUPT" bash -c '! grep -q CORRUPT "$0"' "$tmp/src3.out"
  expect "cancel: no 'migrated to'" bash -c '! grep -q "migrated to" "$0"' "$tmp/src3.out.err"
else
  bad "cancel: start receiver and source"
fi

summary
