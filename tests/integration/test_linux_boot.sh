#!/usr/bin/env bash
# A stock Linux kernel (Debian's linux-image-*-amd64 bzImage, tests/guests/linux) boots
# under `vmm run` with 2 vCPUs, every time: its busybox init sees both CPUs (the MP table,
# libvmm/mptable.c), hashes on each, prints its verdict and ends the VM through the exit
# port with status 0. VMM_LINUX_BOOTS boots (default 3). Prints, per boot, the guest's
# uptime when init started and the host's wall time to the verdict (figures, not checks).
# The kernel package is fetched once (tests/guests/linux/build.sh, outside the checkout);
# if it cannot be, this fails saying why (it does not skip).
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
use_tmp /tmp/vmm-linux-boot.XXXXXX
cpus=2
boots=${VMM_LINUX_BOOTS:-3}

linux_guest
cmdline=$(linux_cmdline "$cpus" 20000)

for i in $(seq "$boots"); do
  start=$(date +%s%N)
  timeout -k 10 $((20 * slow)) "$VMM_CLI" run --memory 256M --cpus "$cpus" --initrd "$initrd" \
    --cmdline "$cmdline" "$kernel" >"$tmp/out$i" 2>"$tmp/err$i"
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  up=$(tr -d '\r' <"$tmp/out$i" | sed -n 's/^linux-guest: up \([0-9.]*\) s.*/\1/p')
  echo "boot $i: status $rc, init at ${up:-?} s guest uptime, verdict after $ms ms host wall time"
  if [ "$rc" = 0 ] && grep -q '^linux-guest: verdict ok' <(tr -d '\r' <"$tmp/out$i") &&
    grep -q "^linux-guest: $cpus cpus hashed" <(tr -d '\r' <"$tmp/out$i"); then
    ok "boot $i: $cpus CPUs, verdict ok, exit 0"
  else
    bad "boot $i: status $rc"
    tail -n 30 "$tmp/out$i"; cat "$tmp/err$i"
  fi
done
summary
