#!/usr/bin/env bash
# check_layering.py passes on the tree and fails on each kind of violation, planted one at a
# time in a copy of the tree (so the check can fail, and says why).
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
check="$src/tests/tools/check_layering.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

python3 "$check" "$src" >/dev/null || { echo "FAIL: the tree itself"; python3 "$check" "$src"; exit 1; }
echo "ok: the tree passes"

# plant FILE LINE WHAT: appends LINE to FILE in a fresh copy and expects a failure naming WHAT.
plant() {
	rm -rf "$tmp/t" && mkdir -p "$tmp/t"
	cp -r "$src/libvmm" "$src/migrate" "$src/include" "$tmp/t/"
	printf '%s\n' "$2" >>"$tmp/t/$1"
	if out=$(python3 "$check" "$tmp/t"); then
		echo "FAIL: $1 with '$2' passed"; fails=$((fails + 1))
	elif ! grep -q -- "$3" <<<"$out"; then
		echo "FAIL: $1 with '$2' failed without naming '$3': $out"; fails=$((fails + 1))
	else
		echo "ok: $1 with '$2' refused"
	fi
}
plant libvmm/bus.c '#include "migrate/stream.h"' 'the core includes migrate/stream.h'
plant libvmm/memory.c '#include "stream.pb-c.h"' 'the core includes the stream schema'
plant migrate/ram.c '#include "libvmm/vm_internal.h"' 'migrate/ includes libvmm/vm_internal.h'
plant include/vmm/vm.h '#include "libvmm/memory.h"' 'a public header includes'
plant libvmm/bus.c '#include "memory.h"' 'not path-qualified'
plant libvmm/memory.c '#include "libvmm/vm_internal.h"' 'include cycle'
exit $((fails > 0))
