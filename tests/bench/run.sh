#!/bin/bash
# make bench: libvmm against the physical limits and QEMU 7.2, measured in one run.
#   bash tests/bench/run.sh [BUILD]      (BUILD: the CMake build tree, default build)
#   BENCH_ONLY=tls bash tests/bench/run.sh [BUILD]   (make bench-tls: the tls phase only,
#   libvmm's tls_bench and QEMU's TLS migration of a paused TCG guest: needs no /dev/kvm)
#   BENCH_ONLY=mem bash tests/bench/run.sh [BUILD]   (make bench-mem: migrate_mem_bench
#   and snapshot_restore_bench alone, the migration and eager-restore data paths on memory
#   only: need no /dev/kvm; BENCH_MEM_ARGS and BENCH_RESTORE_ARGS pass them options, e.g.
#   "--mem 512 --patterns random")
# Installs what it needs (Debian, as root), builds vmm_bench and the guests, runs
# tests/bench/bench.py. Output: BUILD/bench/report.md, report.json, *.png; logs in
# BUILD/bench/logs. Figures only: it fails when a run fails, never on time.
#
# Benchmarks need an optimised library: if BUILD is not a Release/RelWithDebInfo tree, a
# RelWithDebInfo tree is configured in BUILD/bench/obj and used instead (BUILD is left alone).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=$(realpath -m "${1:-build}")
OUT=$BUILD/bench
PY=/usr/bin/python3   # Debian's python3 (python3-matplotlib lives there), not a pyenv shim
PKGS="qemu-system-x86 iperf3 libvirt-daemon-system libvirt-clients python3 python3-matplotlib \
cmake gcc make pkg-config liburing-dev libzstd-dev libxxhash-dev libprotobuf-c-dev \
protobuf-c-compiler libmicrohttpd-dev libjson-c-dev libcurl4-openssl-dev"
# The memory-only phase needs only what builds the library and its tests.
[ "${BENCH_ONLY:-}" = mem ] && PKGS="cmake gcc make pkg-config liburing-dev libzstd-dev \
libxxhash-dev libprotobuf-c-dev protobuf-c-compiler libcmocka-dev libmicrohttpd-dev libjson-c-dev \
libcurl4-openssl-dev"
T0=$(date +%s)

say() { echo "[run.sh $(( $(date +%s) - T0 ))s] $*"; }

# ---- packages
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "run.sh: run as root, or install:$missing" >&2
		exit 1
	fi
	say "installing:$missing"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
. "$SRC/tests/vmhost/kvm_usable.sh"
ONLY=${BENCH_ONLY:-}
if [ "$ONLY" != tls ] && [ "$ONLY" != mem ] && ! kvm_usable; then
	echo "run.sh: /dev/kvm cannot be opened read-write" >&2
	exit 1
fi

# ---- build (retried: other people edit the tree while this runs)
mkdir -p "$OUT"
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
case "$btype" in
Release | RelWithDebInfo) OBJ=$BUILD ;;
"")
	OBJ=$BUILD
	cmake -S "$SRC" -B "$OBJ" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	;;
*)
	OBJ=$OUT/obj
	say "$BUILD is a $btype build; benchmarking an optimised (RelWithDebInfo) build in $OBJ"
	# BUILD_TESTING stays on: tls_bench links the test utilities (only the targets below are built)
	cmake -S "$SRC" -B "$OBJ" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	;;
esac
# The migration and eager-restore data paths on memory only (fake kernel: no KVM; issue
# 14): their tables and the physical limits of this machine measured in the same run.
mem_bench() {
	if cmake --build "$OBJ" --target migrate_mem_bench snapshot_restore_bench -j"$(nproc)" \
		>>"$OUT/build.log" 2>&1; then
		# shellcheck disable=SC2086
		"$OBJ/tests/bench/migrate_mem_bench" ${BENCH_MEM_ARGS:-} | tee "$OUT/migrate_mem.md"
		# shellcheck disable=SC2086
		"$OBJ/tests/bench/snapshot_restore_bench" ${BENCH_RESTORE_ARGS:-} \
			| tee "$OUT/snapshot_restore.md"
	else
		say "the memory-only benches did not build (a BUILD_TESTING=OFF tree?), see $OUT/build.log"
		return 1
	fi
}
if [ "$ONLY" = mem ]; then
	mem_bench
	exit $?
fi

built=0
for attempt in 1 2 3 4 5 6 7 8 9 10; do
	if cmake --build "$OBJ" --target vmm_bench tls_bench guests -j"$(nproc)" >"$OUT/build.log" 2>&1; then
		built=1
		break
	fi
	say "build failed (attempt $attempt, see $OUT/build.log); someone may be mid-edit, retrying in 60 s"
	tail -5 "$OUT/build.log"
	sleep 60
done
[ "$built" = 1 ] || { echo "run.sh: build failed, see $OUT/build.log" >&2; exit 1; }
say "built $OBJ/tests/bench/vmm_bench and the guests"

# ---- run; everything the orchestrator starts is in its own process group
pid=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
	# stragglers of ours only: the orchestrator's process group
	[ -n "$pid" ] && kill -KILL -- "-$pid" 2>/dev/null || true
	rm -rf "$OUT/tmp"
	exit "$rc"
}
trap cleanup EXIT INT TERM HUP

rm -rf "$OUT/tmp" "$OUT/logs"
setsid "$PY" "$SRC/tests/bench/bench.py" --build "$OBJ" --out "$OUT" \
	--vmm-bench "$OBJ/tests/bench/vmm_bench" --guests "$OBJ/tests/guests" \
	${ONLY:+--only "$ONLY"} ${BENCH_ARGS:-} > >(tee "$OUT/bench.log") 2>&1 &
pid=$!
# Bounded: every wait inside is bounded too; this is the backstop.
deadline=$(( $(date +%s) + ${BENCH_TIMEOUT:-3600} ))
while kill -0 "$pid" 2>/dev/null; do
	if [ "$(date +%s)" -gt "$deadline" ]; then
		echo "run.sh: benchmarks still running after ${BENCH_TIMEOUT:-3600} s, stopping them" >&2
		exit 1
	fi
	sleep 1
done
set +e
wait "$pid"
rc=$?
set -e
pid=""
say "done (exit $rc): $OUT/report.md"
# Snapshot encryption at rest (fake kernel; needs the test targets, absent in a
# BUILD_TESTING=OFF tree).
if [ "$OBJ" = "$BUILD" ] && [ "$ONLY" != tls ]; then
	bash "$SRC/tests/bench/snapshot_crypt.sh" "$BUILD" || say "snapshot_crypt.sh failed"
fi
if [ "$ONLY" != tls ]; then
	mem_bench || say "migrate_mem_bench failed"
fi
if [ "$ONLY" = tls ]; then
	[ -f "$OUT/report.md" ] && sed -n '/^## TLS/,$p' "$OUT/report.md"
else
	[ -f "$OUT/report.md" ] && sed -n '/^## Headline/,/^## Physical/p' "$OUT/report.md" | head -n -1
fi
exit "$rc"
