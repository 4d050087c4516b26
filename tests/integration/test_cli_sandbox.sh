#!/usr/bin/env bash
# The sandbox (vmm/sandbox.h) and encrypted snapshots from the shell. vmm run, restore and
# receive confine every thread by default: a guest's output under the sandbox equals its
# output with --no-sandbox; a snapshot taken through the control socket (whose server
# thread runs under the control filter), plain and encrypted, restores under the sandbox
# to the uninterrupted run's result; a live migration between two sandboxed vmm arrives
# and finishes there; no "libvmm sandbox" report anywhere. Encrypted files: the wrong key
# and no key are refused (VMM_EKEY) without running anything. The control socket stays
# 0600. The forbidden-call kill itself is tests/unit/test_sandbox.c (it needs a way to
# make a confined thread misbehave).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
g=$VMM_GUEST_DIR
use_tmp /tmp/vmm-sandbox.XXXXXX
no_report() { # name file...
  if grep -q 'libvmm sandbox' "${@:2}" 2>/dev/null; then bad "$1: sandbox report"; cat "${@:2}"
  else ok "$1: no sandbox report"; fi
}

# --- the same output with and without the sandbox
for args in "hello.elf" "--cmdline count=50 counter.elf" "--cpus 2 --cmdline cpus=2,iters=20000 smp.elf" \
            "--memory 64M --cmdline mem=16,gens=2 memcheck.elf"; do
  set -- $args; k=${!#}; set -- "${@:1:$#-1}"
  "$VMM_CLI" run --no-sandbox "${@//,/ }" "$g/$k" >"$tmp/plain.out" 2>"$tmp/plain.err"; s1=$?
  "$VMM_CLI" run "${@//,/ }" "$g/$k" >"$tmp/sb.out" 2>"$tmp/sb.err"; s2=$?
  expect "$k: same status sandboxed ($s2) as not ($s1)" [ "$s1" = "$s2" ]
  expect "$k: same output sandboxed" cmp -s "$tmp/plain.out" "$tmp/sb.out" ||
    { show "$tmp/sb.out"; show "$tmp/sb.err"; }
  no_report "$k" "$tmp/sb.err"
done

# --- snapshots through the control socket of a sandboxed vmm, restored sandboxed
want=$("$VMM_CLI" run --no-sandbox --cmdline "count=20" "$g/counter.elf" | tail -n1)
head -c 32 /dev/urandom >"$tmp/key"; head -c 32 /dev/urandom >"$tmp/key2"
if start_vm "$tmp/s" "$tmp/run.out" --cmdline "count=20 interval=$((100000 * slow))" "$g/counter.elf"; then
  expect "control socket is 0600" [ "$(stat -c %a "$tmp/s")" = 600 ]
  wait_line "$tmp/run.out" '^count 3$'
  "$VMM_CLI" snapshot "$tmp/s" "$tmp/plain.snap" >/dev/null 2>"$tmp/snap.err" || { bad "plain snapshot"; show "$tmp/snap.err"; }
  "$VMM_CLI" snapshot "$tmp/s" "$tmp/enc.snap" --key-file "$tmp/key" >/dev/null 2>"$tmp/snap.err" ||
    { bad "encrypted snapshot"; show "$tmp/snap.err"; }
  "$VMM_CLI" snapshot "$tmp/s" "$tmp/encz.snap" --compress --live --key-file "$tmp/key" --stop >/dev/null 2>"$tmp/snap.err" ||
    { bad "compressed live encrypted snapshot"; show "$tmp/snap.err"; }
  wait_exit "$vmpid" 60
  no_report "run with snapshots" "$tmp/run.out.err"
  expect "encrypted file holds no plain preamble" bash -c '! grep -q LIBVMMSN "$0"' "$tmp/enc.snap"
  for f in plain enc encz; do
    k=(); [ "$f" = plain ] || k=(--key-file "$tmp/key")
    "$VMM_CLI" restore "${k[@]}" "$tmp/$f.snap" >"$tmp/r.out" 2>"$tmp/r.err"; rc=$?
    expect "restore $f sandboxed: exit 0 ($rc), ends as the uninterrupted run" \
      [ "$rc" = 0 -a "$(tail -n1 "$tmp/r.out")" = "$want" ] || { show "$tmp/r.out"; show "$tmp/r.err"; }
    no_report "restore $f" "$tmp/r.err"
  done
  "$VMM_CLI" restore --key-file "$tmp/key2" "$tmp/enc.snap" >"$tmp/r.out" 2>"$tmp/r.err"; rc=$?
  expect "wrong key: exit 1 ($rc), VMM_EKEY, nothing ran" bash -c \
    '[ "$0" = 1 ] && [ ! -s "$1" ] && grep -q "wrong or missing key" "$2"' "$rc" "$tmp/r.out" "$tmp/r.err" ||
    show "$tmp/r.err"
  "$VMM_CLI" restore "$tmp/enc.snap" >"$tmp/r.out" 2>"$tmp/r.err"; rc=$?
  expect "no key: exit 1 ($rc), VMM_EKEY" bash -c \
    '[ "$0" = 1 ] && grep -q "wrong or missing key" "$1"' "$rc" "$tmp/r.err" || show "$tmp/r.err"
fi

# --- a live migration between two sandboxed vmm (2 connections, zstd)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$VMM_CLI" receive "127.0.0.1:$port" >"$tmp/rx.out" 2>"$tmp/rx.err" &
rxpid=$!; pids+=("$rxpid")
wait_line "$tmp/rx.err" "receiving on"
if start_vm "$tmp/m" "$tmp/src.out" --memory 64M --cmdline "mem=16 gens=$((4 + 4 * (slow > 1))) rate=8" "$g/memcheck.elf"; then
  wait_line "$tmp/src.out" '^memcheck gen 1 ok'
  "$VMM_CLI" migrate "$tmp/m" "127.0.0.1:$port" --connections 2 --compress zstd >/dev/null 2>"$tmp/mig.err"; rc=$?
  expect "sandboxed migration exits 0 ($rc)" [ "$rc" = 0 ] || show "$tmp/mig.err"
  wait_exit "$rxpid" 120
  expect "destination finishes: memcheck done ok, exit 0 ($rc)" \
    [ "$rc" = 0 -a "$(tail -n1 "$tmp/rx.out" | tr -d '\r')" = "memcheck done ok" ] || { show "$tmp/rx.out"; show "$tmp/rx.err"; }
  expect "no CORRUPT" bash -c '! cat "$0" "$1" | grep -q CORRUPT' "$tmp/src.out" "$tmp/rx.out"
  no_report "migration" "$tmp/rx.err" "$tmp/src.out.err"
fi
summary
