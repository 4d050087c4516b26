#!/usr/bin/env bash
# The stock Linux guest (tests/guests/linux) snapshotted mid-workload and restored: its init
# prints "count 1".."count N" 0.2 s apart on 2 vCPUs; `vmm snapshot --stop` saves it part-way,
# then `vmm restore` (eager, then lazy, from the same file) must carry on: the counter lines
# before and after join into exactly 1..N, both CPUs hash again after the restore, and the
# guest's verdict is ok with exit status 0.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
use_tmp /tmp/vmm-linux-snap.XXXXXX
cpus=2 n=30

linux_guest
cmdline="$(linux_cmdline "$cpus" 5000) guest_count=$n"

clean() { tr -d '\r' <"$1"; }
# The count lines of the run before the snapshot and of one after it, joined.
counts() { cat "$tmp/before" "$1" | tr -d '\r' | sed -n 's/^count \([0-9]*\)$/\1/p' | tr '\n' ' '; }
want=$(seq 1 $n | tr '\n' ' ')

if ! start_vm "$tmp/s.sock" "$tmp/before" --memory 256M --cpus "$cpus" --initrd "$initrd" \
  --cmdline "$cmdline" "$kernel"; then
  bad "vmm run --control starts"; summary; exit 1
fi
wait_line "$tmp/before" "^count 5"
expect "guest counts before the snapshot" grep -q "^count 5" "$tmp/before"
"$VMM_CLI" snapshot "$tmp/s.sock" "$tmp/linux.snap" --stop >"$tmp/snap.out" 2>"$tmp/snap.err"
expect "vmm snapshot --stop" [ $? = 0 ] || cat "$tmp/snap.err"
wait_exit "$vmpid" $((60))
expect "vmm run exits 0 after --stop (got $rc)" [ "$rc" = 0 ]
expect "snapshot taken mid-count" bash -c '! grep -q "verdict" "$0"' "$tmp/before"

for mode in eager lazy; do
  opt=(); [ $mode = lazy ] && opt=(--lazy)
  timeout -k 10 $((60 * slow)) "$VMM_CLI" restore "${opt[@]}" "$tmp/linux.snap" >"$tmp/$mode" 2>"$tmp/$mode.err"
  rc=$?
  if expect "$mode restore: exit 0 (got $rc)" [ "$rc" = 0 ] &&
    expect "$mode restore: verdict ok" grep -q '^linux-guest: verdict ok' <(clean "$tmp/$mode") &&
    expect "$mode restore: counter continues, 1..$n once each" [ "$(counts "$tmp/$mode")" = "$want" ] &&
    expect "$mode restore: $cpus cpus hash after it" \
      grep -q "^linux-guest: $cpus cpus hashed" <(clean "$tmp/$mode"); then
    :
  else
    echo "counts: $(counts "$tmp/$mode")"; tail -n 20 "$tmp/$mode"; cat "$tmp/$mode.err"
  fi
done
summary
