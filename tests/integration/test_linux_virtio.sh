#!/usr/bin/env bash
# The stock Linux guest (tests/guests/linux) with a virtio-rng and a virtio-blk disk
# (`vmm run --rng --disk IMG`): Debian's kernel finds both through libvmm's ACPI tables
# (its modules loaded by init), reads /dev/hwrng, reads a block the host seeded, writes
# numbered 4 KiB blocks to /dev/vda, drops its cache, reads them back and prints its
# verdict. Then the host checks the image block by block: the guest's pattern where it
# wrote, the seed and zeros elsewhere. A second vmm on the same image, while the first
# runs, is refused (VMM_ELOCKED) without touching it.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
use_tmp /tmp/vmm-linux-virtio.XXXXXX
cpus=2 blocks=64 seedblk=200 nblk=256

linux_guest
img=$tmp/disk.img
truncate -s $((nblk * 4096)) "$img"
yes "host seed block" | head -c 4096 | dd of="$img" bs=4096 seek=$seedblk conv=notrunc 2>/dev/null
seedmd5=$(dd if="$img" bs=4096 skip=$seedblk count=1 2>/dev/null | md5sum | cut -d' ' -f1)
# init prints through the UART's tty, whose IRQ 4 Linux finds only in the ACPI tables
# (COM1 in the DSDT) once a VM has them.
cmdline="$(linux_cmdline "$cpus" 2000) guest_virtio=1 guest_rng=1 guest_disk=$blocks guest_seed=$seedblk:$seedmd5"
clean() { tr -d '\r' <"$1"; }

if ! start_vm "$tmp/v.sock" "$tmp/out" --memory 256M --cpus "$cpus" --rng --disk "$img" \
  --initrd "$initrd" --cmdline "$cmdline" "$kernel"; then
  bad "vmm run --rng --disk starts"; summary; exit 1
fi
# The image is held: a second vmm is refused before it runs anything.
"$VMM_CLI" run --disk "$img" --cmdline x "$kernel" >"$tmp/second" 2>"$tmp/second.err"
rc=$?
expect "a second vmm on the image: exit 1 (got $rc), disk locked" \
  bash -c '[ "$0" = 1 ] && grep -q "locked" "$1"' "$rc" "$tmp/second.err" || cat "$tmp/second.err"
wait_exit "$vmpid" 60
if expect "vmm run exits 0 (got $rc)" [ "$rc" = 0 ] &&
  expect "guest verdict ok" grep -q 'linux-guest: verdict ok' <(clean "$tmp/out") &&
  expect "virtio-rng is the guest's hwrng" grep -q 'linux-guest: rng virtio_rng' <(clean "$tmp/out") &&
  expect "virtio-blk: $((nblk * 8)) sectors, serial libvmm-disk1" \
    grep -q "linux-guest: disk $((nblk * 8)) sectors, serial libvmm-disk1" <(clean "$tmp/out") &&
  expect "guest wrote and read back $blocks blocks" \
    grep -q "linux-guest: disk wrote $blocks blocks" <(clean "$tmp/out"); then
  :
else
  tail -n 40 "$tmp/out"; cat "$tmp/out.err"
fi

# The image, block by block, from the host.
badblk=""
zero=$(head -c 4096 /dev/zero | md5sum | cut -d' ' -f1)
for i in $(seq 0 $((nblk - 1))); do
  got=$(dd if="$img" bs=4096 skip="$i" count=1 2>/dev/null | md5sum | cut -d' ' -f1)
  if [ "$i" -lt $blocks ]; then
    want=$(yes "$(printf '%-31s' "libvmm block $i gen 1")" | head -c 4096 | md5sum | cut -d' ' -f1)
  elif [ "$i" = $seedblk ]; then
    want=$seedmd5
  else
    want=$zero
  fi
  [ "$got" = "$want" ] || badblk="$badblk $i"
done
expect "image: blocks 0-$((blocks - 1)) hold the guest's pattern, the seed and zeros elsewhere" \
  [ -z "$badblk" ] || echo "blocks that differ:$badblk"
expect "image size unchanged" [ "$(stat -c %s "$img")" = $((nblk * 4096)) ]
summary
