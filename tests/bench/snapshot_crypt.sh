#!/bin/bash
# Snapshot encryption at rest against plain files (no KVM needed: the fake kernel).
#   bash tests/bench/snapshot_crypt.sh [BUILD (build)] [MiB (1024)] [DIR (/var/tmp)]
# Builds snapshot_crypt_bench, runs it, and adds the cipher's limit on this machine
# (`openssl speed -evp aes-256-gcm`, one core, 16 KiB blocks, times the cores the library
# uses). Output on stdout and in BUILD/bench/snapshot_crypt.md. Figures only.
set -euo pipefail
BUILD=$(realpath -m "${1:-build}")
MIB=${2:-1024} DIR=${3:-/var/tmp}
mkdir -p "$BUILD/bench"
cmake --build "$BUILD" --target snapshot_crypt_bench -j"$(nproc)" >/dev/null
{
	"$BUILD/tests/bench/snapshot_crypt_bench" "$MIB" "$DIR"
	per_core=$(openssl speed -evp aes-256-gcm -seconds 2 2>/dev/null |
		awk '/^AES-256-GCM/ { v = $NF; sub(/k$/, "", v); print v * 1000 }')
	cores=$(nproc); [ "$cores" -gt 4 ] && cores=4
	echo
	echo "Limit: openssl speed -evp aes-256-gcm (16 KiB blocks): $(awk -v b="$per_core" 'BEGIN { printf "%.2f", b / 1e9 }') GB/s per core," \
		"x $cores cores used = $(awk -v b="$per_core" -v c="$cores" 'BEGIN { printf "%.2f", b * c / 1e9 }') GB/s ($(nproc) cores here)"
} | tee "$BUILD/bench/snapshot_crypt.md"
