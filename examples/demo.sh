#!/usr/bin/env bash
# make demo: boots the test guests with the vmm command and shows them running.
# (Migration and snapshots join this demo as they land.)
set -euo pipefail
build=${1:-build}
vmm=$build/examples/vmm
g=$build/tests/guests
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say "vmm $("$vmm" version | cut -d' ' -f2): boot the hello guest (multiboot ELF)"
"$vmm" run "$g/hello.elf"
say "the same guest logic as a Linux bzImage, with an initrd"
"$vmm" run --cmdline "demo=1" --initrd "$g/hello.elf" "$g/hello.bzimage"
say "counter, 2 vCPU smp, FPU/AVX state and timers"
"$vmm" run --cmdline "count=5 interval=100000" "$g/counter.elf"
"$vmm" run --cpus 2 --cmdline "cpus=2" "$g/smp.elf" | tail -n 2
"$vmm" run --cmdline "loops=20" "$g/fpu.elf" | tail -n 1
"$vmm" run --cmdline "secs=2" "$g/timer.elf" | tail -n 1
say "memcheck: 64 MiB working set, 4 generations, verified page by page"
"$vmm" run --memory 128M --cmdline "mem=64 gens=4" "$g/memcheck.elf"
say "demo ok"
