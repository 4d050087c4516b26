#!/usr/bin/env bash
# make demo: libvmm end to end in about a minute, with real processes and real TCP.
#  1. memcheck boots in a VM (source) and a receiver waits (destination): two processes
#  2. the running guest is live-migrated while it rewrites its memory (live progress)
#  3. the summary, and the guest's own verdict from the destination
#  4. a live snapshot of the migrated VM, restored lazily in a third process, continues
# Exits 0 only if every step verified. Options (environment): MEM_MIB, GENS, RATE.
set -euo pipefail
build=${1:-build}
# Without a usable /dev/kvm, the demo runs whole in the emulated KVM host (tests/vmhost).
. "$(dirname "$0")/../tests/vmhost/kvm_usable.sh"
if ! kvm_usable && [ -z "${VMM_TEST_EMULATED:-}" ]; then
  echo "demo: /dev/kvm cannot be opened on this machine, so the demo runs in the emulated KVM host"
  echo "      (tests/vmhost: QEMU software emulation with SVM, ~1 min to prepare the first time);"
  echo "      every figure below is measured under that emulation, 3-20x slower than real KVM"
  exec bash "$(dirname "$0")/../tests/vmhost/run.sh" --share "$build" -- bash "$0" "$build"
fi
# Deadlines stretch under emulation; what is checked does not change.
slow=1
[ -z "${VMM_TEST_EMULATED:-}" ] || slow=10
vmm=$(realpath "$build/examples/vmm")
guest=$(realpath "$build/tests/guests/memcheck.elf")
mem=${MEM_MIB:-128} gens=${GENS:-40} rate=${RATE:-150}
# Emulated, the link is about ten times slower: a quarter of the memory at a fifth of the
# rate, so pre-copy still converges while the guest rewrites it.
[ -z "${VMM_TEST_EMULATED:-}" ] || mem=${MEM_MIB:-32} rate=${RATE:-30}
tmp=$(mktemp -d /tmp/vmm-demo.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT
bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
fail() { printf '\n\033[31mdemo FAILED: %s\033[0m\n' "$*"; exit 1; }
wait_for() { # file, pattern, seconds
  for _ in $(seq $(($3 * 10 * slow))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  fail "timed out waiting for '$2' in $(basename "$1")"
}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

bold "== 1. boot memcheck (${mem} MiB working set rewritten ${gens}x at ${rate} MB/s) and a receiver"
"$vmm" receive "127.0.0.1:$port" --control "$tmp/dst.sock" >"$tmp/dst.out" 2>"$tmp/dst.err" &
dst=$!
wait_for "$tmp/dst.err" "receiving on" 10
"$vmm" run --control "$tmp/src.sock" --memory $((mem * 2 + 64))M \
  --cmdline "mem=$mem gens=$gens rate=$rate" "$guest" >"$tmp/src.out" 2>"$tmp/src.err" &
src=$!
wait_for "$tmp/src.out" "memcheck gen 2 ok" 30
echo "source (pid $src) is at: $(tail -n1 "$tmp/src.out")"
echo "receiver (pid $dst) listens on 127.0.0.1:$port"

bold "== 2. live-migrate the running guest to the receiver"
"$vmm" migrate "$tmp/src.sock" "127.0.0.1:$port" --json >"$tmp/migrate.json" \
  || fail "migration failed"
wait "$src" || fail "source vmm did not exit cleanly after the migration"

bold "== 3. summary"
python3 - "$tmp/migrate.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
t = d["total"]
print(f"moved in {t['total_ms']:.0f} ms: {t['rounds']} rounds, {t['wire_bytes']/1e6:.1f} MB on the wire "
      f"(compression {t['compression_ratio']:.2f}x), {t['zero_pages']} zero pages sent as bits")
print(f"guest paused for {t['downtime_ms']:.2f} ms (expected {t['expected_downtime_ms']:.2f} ms)")
for r in d["rounds"]:
    print(f"  round {r['round']:>2}{' final' if r.get('final') else '      '} {r['pages']:>7} pages "
          f"{r['bandwidth_mbps']:>7.0f} MB/s  dirty {r['dirty_rate_mbps']:>6.0f} MB/s")
PY
echo "last lines the guest printed on the source:"
tail -n 2 "$tmp/src.out" | sed 's/^/  [source] /'
wait_for "$tmp/dst.out" "memcheck gen $((gens / 2)) ok" 60
echo "the destination carries on:"
tail -n 2 "$tmp/dst.out" | sed 's/^/  [destination] /'

bold "== 4. live snapshot of the migrated VM, restored lazily in a third process"
"$vmm" snapshot "$tmp/dst.sock" "$tmp/vm.snap" --live --stop || fail "snapshot failed"
wait "$dst" || fail "destination vmm did not exit cleanly after the snapshot"
"$vmm" snapshot-info "$tmp/vm.snap" | sed 's/^/  /'
"$vmm" restore "$tmp/vm.snap" --lazy >"$tmp/restored.out" 2>"$tmp/restored.err" \
  || fail "the restored guest failed: $(tail -n 3 "$tmp/restored.out" "$tmp/restored.err")"
echo "the restored guest (third process) continued from there:"
head -n 1 "$tmp/restored.out" | sed 's/^/  [restored] /'
echo "  ..."
tail -n 2 "$tmp/restored.out" | sed 's/^/  [restored] /'

bold "== verdict"
all=$(cat "$tmp/src.out" "$tmp/dst.out" "$tmp/restored.out")
! grep -q CORRUPT <<<"$all" || fail "the guest found corrupted memory"
for g in $(seq 1 "$gens"); do
  [ "$(grep -c "^memcheck gen $g ok" <<<"$all")" = 1 ] || fail "generation $g not verified exactly once"
done
[ "$(tail -n1 "$tmp/restored.out")" = "memcheck done ok" ] || fail "no final verdict"
echo "every generation verified exactly once across source, destination and restored VM:"
echo "  memcheck done ok"
bold "demo ok"
