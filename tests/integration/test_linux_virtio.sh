#!/usr/bin/env bash
# The stock Linux guest (tests/guests/linux) with a virtio-rng and a virtio-blk disk
# (`vmm run --rng --disk IMG`): Debian's kernel finds both through libvmm's ACPI tables
# (its modules loaded by init), reads /dev/hwrng, reads a block the host seeded, then
# writes numbered 4 KiB blocks to /dev/vda generation by generation, one request at a
# time, reading each generation back after dropping its cache. A second vmm on the same
# image, while the first runs, is refused (VMM_ELOCKED) without touching it.
# Mid-workload, `vmm snapshot --stop` saves the machine and the host copies the image
# beside it (a disk is not inside the snapshot: vmm/devices.h); `vmm restore` (eager, then
# lazy), each on its own copy, must carry the workload on. Then a third copy is restored
# with a control socket and live-migrated mid-workload to a `vmm receive` on this host
# given the same image (shared storage: its lock moves with the guest at the hand-over),
# and once more with --copy-disks to a receiver with its own empty image.
# Each time the generations before and after join into exactly 1..N, the guest's verdict
# is ok, and the host checks the image block by block: the last generation where the
# guest wrote, the seed and zeros elsewhere.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
use_tmp /tmp/vmm-linux-virtio.XXXXXX
cpus=2 blocks=8 gens=12 seedblk=200 nblk=256

linux_guest
img=$tmp/disk.img
truncate -s $((nblk * 4096)) "$img"
yes "host seed block" | head -c 4096 | dd of="$img" bs=4096 seek=$seedblk conv=notrunc 2>/dev/null
seedmd5=$(dd if="$img" bs=4096 skip=$seedblk count=1 2>/dev/null | md5sum | cut -d' ' -f1)
# init prints through the UART's tty, whose IRQ 4 Linux finds only in the ACPI tables
# (COM1 in the DSDT) once a VM has them.
cmdline="$(linux_cmdline "$cpus" 2000) guest_virtio=1 guest_rng=1 guest_disk=$blocks guest_gens=$gens guest_gen_pause=0.5 guest_seed=$seedblk:$seedmd5"
clean() { tr -d '\r' <"$1"; }
# The generations the guest read back before the snapshot and after it (files), joined.
gens_seen() { cat "$tmp/before" "$@" | tr -d '\r' | sed -n "s/^linux-guest: disk wrote $blocks blocks gen \([0-9]*\),.*/\1/p" | tr '\n' ' '; }
want_gens=$(seq 1 $gens | tr '\n' ' ')

if ! start_vm "$tmp/v.sock" "$tmp/before" --memory 256M --cpus "$cpus" --rng --disk "$img" \
  --initrd "$initrd" --cmdline "$cmdline" "$kernel"; then
  bad "vmm run --rng --disk starts"; summary; exit 1
fi
# The image is held: a second vmm is refused before it runs anything.
"$VMM_CLI" run --disk "$img" --cmdline x "$kernel" >"$tmp/second" 2>"$tmp/second.err"
rc=$?
expect "a second vmm on the image: exit 1 (got $rc), disk locked" \
  bash -c '[ "$0" = 1 ] && grep -q "locked" "$1"' "$rc" "$tmp/second.err" || cat "$tmp/second.err"
wait_line "$tmp/before" "disk wrote $blocks blocks gen 1,"
# vm.info lists both devices, with what the guest has done with them so far.
http "$tmp/v.sock" GET vm.info >/dev/null
expect "vm.info: the rng gave random bytes, the disk wrote generation 1" json_has "$tmp/body" \
  "[x['kind'] for x in d['devices']] == ['rng', 'blk'] and d['devices'][0]['bytes_read'] >= 4096
   and d['devices'][1]['path'] == '$img' and d['devices'][1]['capacity_bytes'] == $((nblk * 4096))
   and d['devices'][1]['bytes_written'] >= $((blocks * 4096)) and d['devices'][1]['errors'] == 0
   and d['devices'][1]['serial'] == 'libvmm-disk1' and d['devices'][1]['driver_status'] == 15" ||
  cat "$tmp/body"
"$VMM_CLI" snapshot "$tmp/v.sock" "$tmp/v.snap" --stop >"$tmp/snap.out" 2>"$tmp/snap.err"
expect "vmm snapshot --stop mid-workload" [ $? = 0 ] || cat "$tmp/snap.err"
wait_exit "$vmpid" 60
expect "vmm run exits 0 after --stop (got $rc)" [ "$rc" = 0 ]
cp --sparse=always "$img" "$tmp/disk.at-snapshot"
if expect "virtio-rng is the guest's hwrng" grep -q 'linux-guest: rng virtio_rng' <(clean "$tmp/before") &&
  expect "virtio-blk: $((nblk * 8)) sectors, serial libvmm-disk1" \
    grep -q "linux-guest: disk $((nblk * 8)) sectors, serial libvmm-disk1" <(clean "$tmp/before") &&
  expect "snapshot taken mid-workload (before generation $gens)" \
    bash -c '! grep -q "gen $1,\|verdict" "$0"' "$tmp/before" "$gens"; then
  :
else
  tail -n 40 "$tmp/before"; cat "$tmp/before.err"
fi

# An image, block by block, from the host: generation $gens where the guest wrote.
check_image() { # name image
  local i got want badblk="" zero
  zero=$(head -c 4096 /dev/zero | md5sum | cut -d' ' -f1)
  for i in $(seq 0 $((nblk - 1))); do
    got=$(dd if="$2" bs=4096 skip="$i" count=1 2>/dev/null | md5sum | cut -d' ' -f1)
    if [ "$i" -lt $blocks ]; then
      want=$(yes "$(printf '%-31s' "libvmm block $i gen $gens")" | head -c 4096 | md5sum | cut -d' ' -f1)
    elif [ "$i" = $seedblk ]; then
      want=$seedmd5
    else
      want=$zero
    fi
    [ "$got" = "$want" ] || badblk="$badblk $i"
  done
  expect "$1 image: blocks 0-$((blocks - 1)) hold generation $gens, the seed and zeros elsewhere" \
    [ -z "$badblk" ] || echo "blocks that differ:$badblk"
  expect "$1 image size unchanged" [ "$(stat -c %s "$2")" = $((nblk * 4096)) ]
}

for mode in eager lazy; do
  opt=(); [ $mode = lazy ] && opt=(--lazy)
  cp --sparse=always "$tmp/disk.at-snapshot" "$tmp/disk.$mode"
  timeout -k 10 $((60 * slow)) "$VMM_CLI" restore "${opt[@]}" --rng --disk "$tmp/disk.$mode" \
    "$tmp/v.snap" >"$tmp/$mode" 2>"$tmp/$mode.err"
  rc=$?
  if expect "$mode restore: exit 0 (got $rc)" [ "$rc" = 0 ] &&
    expect "$mode restore: verdict ok" grep -q '^linux-guest: verdict ok' <(clean "$tmp/$mode") &&
    expect "$mode restore: disk generations 1..$gens, each read back once" \
      [ "$(gens_seen "$tmp/$mode")" = "$want_gens" ]; then
    :
  else
    echo "generations: $(gens_seen "$tmp/$mode")"; tail -n 20 "$tmp/$mode"; cat "$tmp/$mode.err"
  fi
  check_image "$mode restore" "$tmp/disk.$mode"
done

# Live migration between two vmm on this host: sharing the image (its lock moves with the
# guest), then with local disks (--copy-disks: the receiver has its own empty image of the
# same size, and the source's image travels in the stream beside RAM).
for mig in shared local; do
  img=$tmp/disk.mig-$mig
  cp --sparse=always "$tmp/disk.at-snapshot" "$img"
  dimg=$img copy=()
  if [ $mig = local ]; then
    dimg=$tmp/disk.mig-dst; copy=(--copy-disks)
    truncate -s $((nblk * 4096)) "$dimg"
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$VMM_CLI" receive --rng --disk "$dimg" "127.0.0.1:$port" >"$tmp/dst" 2>"$tmp/dst.err" &
  rxpid=$!; pids+=("$rxpid")
  wait_line "$tmp/dst.err" "receiving on"
  rm -f "$tmp/m.sock"
  "$VMM_CLI" restore --control "$tmp/m.sock" --rng --disk "$img" "$tmp/v.snap" >"$tmp/src" 2>"$tmp/src.err" &
  srcpid=$!; pids+=("$srcpid")
  wait_socket "$tmp/m.sock"
  wait_line "$tmp/src" "disk wrote $blocks blocks gen"
  "$VMM_CLI" migrate "$tmp/m.sock" "127.0.0.1:$port" "${copy[@]}" >/dev/null 2>"$tmp/mig.err"
  expect "$mig migration mid-workload: vmm migrate ${copy[*]} exits 0" [ $? = 0 ] || show "$tmp/mig.err"
  wait_exit "$srcpid" 60
  expect "$mig migration: the source exits 0 (got $rc)" [ "$rc" = 0 ] || show "$tmp/src.err"
  wait_exit "$rxpid" 120
  if expect "$mig migration: the destination exits 0 (got $rc)" [ "$rc" = 0 ] &&
    expect "$mig migration: verdict ok on the destination" grep -q '^linux-guest: verdict ok' <(clean "$tmp/dst") &&
    expect "$mig migration: the source wrote, then the destination" \
      bash -c '! grep -q verdict "$0" && grep -q "disk wrote" "$1"' "$tmp/src" "$tmp/dst" &&
    expect "$mig migration: disk generations 1..$gens, each read back once" \
      [ "$(gens_seen "$tmp/src" "$tmp/dst")" = "$want_gens" ]; then
    :
  else
    echo "generations: $(gens_seen "$tmp/src" "$tmp/dst")"; show "$tmp/src.err"; tail -n 20 "$tmp/dst"; show "$tmp/dst.err"
  fi
  check_image "$mig migrated" "$dimg"
done
summary
