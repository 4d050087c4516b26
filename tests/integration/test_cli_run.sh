#!/usr/bin/env bash
# `vmm run` runs every guest to its success line and exits with the guest's status; bad
# arguments give a message on stderr and a non-zero status; hello.elf boots under QEMU too.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
g=$VMM_GUEST_DIR
use_tmp /tmp/vmm-cli-run.XXXXXX
check() { # name, expected last line, expected status, command...
  local name=$1 want=$2 wstatus=$3; shift 3
  local out status last
  out=$("$@" 2>"$tmp/err"); status=$?
  last=$(printf '%s\n' "$out" | tr -d '\r' | grep -v '^$' | tail -n1)
  if [ "$status" = "$wstatus" ] && [[ "$last" == $want ]]; then
    ok "$name"
  else
    bad "$name: status $status (want $wstatus), last line '$last' (want '$want')"
    cat "$tmp/err"
  fi
}
check hello 'hello from guest' 0 "$VMM_CLI" run "$g/hello.elf"
check hello64 'hello from guest' 0 "$VMM_CLI" run "$g/hello64.elf"
check bzimage 'hello from guest' 0 "$VMM_CLI" run --cmdline "a=b" --initrd "$g/hello.elf" "$g/hello.bzimage"
check counter 'done *' 0 "$VMM_CLI" run --cmdline "count=5" "$g/counter.elf"
check memcheck 'memcheck done ok' 0 "$VMM_CLI" run --memory 64M --cmdline "mem=16 gens=2" "$g/memcheck.elf"
check fpu 'fpu ok' 0 "$VMM_CLI" run --cmdline "loops=10" "$g/fpu.elf"
check timer 'timer ok' 0 "$VMM_CLI" run --cmdline "secs=2" "$g/timer.elf"
check smp 'smp ok' 0 "$VMM_CLI" run --cpus 2 --cmdline "cpus=2 iters=100000" "$g/smp.elf"
check memcheck-too-big 'memcheck too big' 2 "$VMM_CLI" run --memory 16M --cmdline "mem=64" "$g/memcheck.elf"
check missing-kernel '' 1 "$VMM_CLI" run /nonexistent.elf
grep -q 'no such file' "$tmp/err" || bad "missing-kernel message"
check garbage-kernel '' 1 "$VMM_CLI" run /etc/passwd
grep -q 'malformed guest image' "$tmp/err" || bad "garbage message"
check zero-memory '' 1 "$VMM_CLI" run --memory 0 "$g/hello.elf"
check absurd-memory '' 1 "$VMM_CLI" run --memory 64T "$g/hello.elf"
check guest-too-big '' 1 "$VMM_CLI" run --memory 1M "$g/hello.elf"
check bad-usage '' 2 "$VMM_CLI" run
# The very same hello.elf under QEMU (isa-debug-exit: status 0 comes back as 1).
if command -v qemu-system-x86_64 >/dev/null; then
  check qemu-hello 'hello from guest' 1 timeout 120 qemu-system-x86_64 -enable-kvm \
    -cpu host,-arch-capabilities -m 64 -display none -serial stdio -no-reboot -nodefaults \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 -kernel "$g/hello.elf"
else
  bad "qemu-system-x86_64 missing: make deps installs it"
fi
summary
