#!/bin/bash
# The ABI is exactly the functions the installed headers declare VMM_EXPORT: libvmm.so must
# export those and nothing else, and libvmm/libvmm.map must list the same names. A new
# public function without a map entry, a map entry without a declaration, or an internal
# (vmm__) name leaking out all fail here.
#   check_exports.sh SOURCE_DIR path/to/libvmm.so
set -euo pipefail
src=$1 lib=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The name is the last identifier before the '(' on the VMM_EXPORT line.
grep -h '^VMM_EXPORT' "$src"/include/vmm/*.h | sed -E 's/\(.*//; s/.*[^A-Za-z0-9_]//' |
	sort >"$tmp/headers"
# Symbols of type A are the version nodes (LIBVMM_0), not functions.
nm -D --defined-only "$lib" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort >"$tmp/exported"
sed -n '/global:/,/local:/p' "$src/libvmm/libvmm.map" | grep -oE '^\s*[A-Za-z_][A-Za-z0-9_]*;' |
	tr -d ' \t;' | sort >"$tmp/map"

[ -s "$tmp/headers" ] || { echo "no VMM_EXPORT declarations found in $src/include/vmm" >&2; exit 1; }
status=0
if ! diff -u --label headers --label 'nm -D libvmm.so' "$tmp/headers" "$tmp/exported"; then
	echo "libvmm.so exports differ from the VMM_EXPORT declarations (+: exported, not declared)" >&2
	status=1
fi
if ! diff -u --label headers --label libvmm.map "$tmp/headers" "$tmp/map"; then
	echo "libvmm/libvmm.map differs from the VMM_EXPORT declarations" >&2
	status=1
fi
[ $status = 0 ] && echo "$(wc -l <"$tmp/headers") public functions, all exported, nothing else"
exit $status
