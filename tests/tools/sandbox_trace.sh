#!/usr/bin/env bash
# tests/tools/sandbox_trace.sh BUILD [OUT]: learns the sandbox's allow-lists. Runs, in the
# emulated KVM host (or here where /dev/kvm opens), every path the vmm command has (run,
# snapshot plain/compressed/encrypted/live, restore eager/lazy/encrypted, live migration
# send and receive over 2 connections) with --no-sandbox under `strace -f -ff`, then
# prints, per thread kind, every system call its threads made after their setup (a
# library thread after it named itself vmm-*, the main thread after "vmm-control"; the
# unnamed threads it starts later, the control server's, count as control). Compare with
# libvmm/sandbox_lists.c.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=$(cd "${1:?build folder}" && pwd)
OUT=${2:-/tmp/vmm-sandbox-trace}
mkdir -p "$OUT"; rm -rf "${OUT:?}"/* # OUT itself may be a mount point in the emulated host
if [ "${VMM_TRACE_INSIDE:-}" != 1 ]; then
	. "$HERE/../vmhost/kvm_usable.sh"
	if kvm_usable; then
		VMM_TRACE_INSIDE=1 bash "$0" "$BUILD" "$OUT"
	else
		"$HERE/../vmhost/run.sh" --share "$BUILD" --share "$OUT" --timeout 1200 \
			--env VMM_TRACE_INSIDE=1 -- bash "$0" "$BUILD" "$OUT"
	fi
	exit
fi
V=$BUILD/examples/vmm G=$BUILD/tests/guests T=$(mktemp -d)
st() { local n=$1; shift; strace -f -ff -qq -o "$OUT/$n" "$V" "$@"; }
wait_sock() { for _ in $(seq 300); do [ -S "$1" ] && return 0; sleep 0.1; done; return 1; }
head -c 32 /dev/urandom >"$T/key"
# run + snapshots through the control socket
st run run --no-sandbox --control "$T/s" --cmdline "count=400 interval=20000" "$G/counter.elf" >"$T/run.out" 2>&1 &
wait_sock "$T/s"
"$V" snapshot "$T/s" "$T/plain.snap"
"$V" snapshot "$T/s" "$T/z.snap" --compress
"$V" snapshot "$T/s" "$T/enc.snap" --key-file "$T/key"
"$V" snapshot "$T/s" "$T/live.snap" --live --track
"$V" snapshot "$T/s" "$T/inc.snap" --incremental "$T/live.snap"
"$V" pause "$T/s"; "$V" resume "$T/s"; "$V" status "$T/s" >/dev/null
"$V" shutdown "$T/s"; wait
# restores
st restore restore --no-sandbox "$T/plain.snap" >/dev/null
st lazy restore --no-sandbox --lazy "$T/plain.snap" >/dev/null
st restz restore --no-sandbox "$T/z.snap" >/dev/null
st restenc restore --no-sandbox --key-file "$T/key" "$T/enc.snap" >/dev/null
st restinc restore --no-sandbox "$T/inc.snap" >/dev/null
# live migration: receive, send over 2 connections with zstd and auto-converge
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
st recv receive --no-sandbox 127.0.0.1:$port >"$T/recv.out" 2>&1 &
sleep 1
st src run --no-sandbox --control "$T/m" --memory 64M --cmdline "mem=16 gens=12 rate=8" "$G/memcheck.elf" >"$T/src.out" 2>&1 &
wait_sock "$T/m"; sleep 1
"$V" migrate "$T/m" 127.0.0.1:$port --connections 2 --compress zstd --auto-converge || echo "migrate failed"
wait
tail -n1 "$T/recv.out"
rm -rf "$T"
python3 - "$OUT" <<'PY'
import collections, glob, os, re, sys
call = re.compile(r'^(?:<\.\.\. )?([a-z_0-9]+)(?:\(| resumed>)')
kinds = collections.defaultdict(collections.Counter)
for f in glob.glob(os.path.join(sys.argv[1], '*.*')):
    kind, seen = None, []
    for line in open(f, errors='replace'):
        m = re.search(r'prctl\(PR_SET_NAME, "vmm-([a-z-]+)', line)
        if m:
            n = m.group(1)
            kind = ('vcpu' if n.startswith('vcpu') else 'device' if n == 'throttle' else
                    'control' if n == 'control' else 'migration')
            seen = []
            continue
        m = call.match(line)
        if m and not line.startswith('<...'):
            seen.append(m.group(1))
    main = int(f.rsplit('.', 1)[1]) == min(int(p.rsplit('.', 1)[1]) for p in glob.glob(f.rsplit('.', 1)[0] + '.*'))
    if kind is None and not main:
        kind = 'control'  # the control server's and the migration worker's threads
    if kind:
        kinds[kind].update(seen)
for k in ('vcpu', 'device', 'migration', 'control'):
    print(f'{k} ({len(kinds[k])}): ' + ' '.join(sorted(kinds[k])))
PY
