#!/usr/bin/env bash
# tests/guests/linux/build.sh [DIR]: a stock Linux guest: Debian's own kernel (the bzImage
# of the current linux-image-*-amd64, fetched with `apt-get download`, unpacked with
# `dpkg -x`) and an initramfs built here from busybox-static and ./init (busybox's cpio,
# no root, no loop mounts). Everything lands in DIR (default $VMM_LINUX_DIR, else
# /var/tmp/libvmm-linux: outside the checkout, so clones on one machine share it):
#   DIR/vmlinuz         the kernel
#   DIR/initramfs.cpio  busybox + init + the kernel's virtio modules (virtio, virtio_ring,
#                       virtio_mmio, virtio_blk, virtio-rng, virtio_net with failover and
#                       net_failover: Debian builds them as modules)
# Reuses the packages the emulated KVM host already fetched (/var/tmp/libvmm-vmhost/debs).
# A no-op while the stamp is current. Prints the two paths, one a line, on stdout; fails
# with a message naming what could not be fetched.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${VMM_LINUX_DIR:-/var/tmp/libvmm-linux}}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
log() { echo "linux-guest: $*" >&2; }
die() { log "$*"; exit 1; }

exec 9>"$OUT/.lock"
flock 9

# The kernel package linux-image-amd64 points at, as tests/vmhost/build.sh picks it.
kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'; }
KPKG=$(kpkg)
if [ -z "$KPKG" ]; then
	apt-get update -qq >&2 || true
	KPKG=$(kpkg)
fi
[ -n "$KPKG" ] || die "apt knows no linux-image-amd64 (is this Debian 12 with its main archive in the sources?)"
KVER=${KPKG#linux-image-}
STAMP="$KVER $(cat "$HERE/build.sh" "$HERE/init" | sha256sum | cut -c1-16)"
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ] &&
	[ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initramfs.cpio" ]; then
	echo "$OUT/vmlinuz"; echo "$OUT/initramfs.cpio"
	exit 0
fi
log "preparing Debian's kernel $KVER and a busybox initramfs in $OUT"
rm -f "$OUT/stamp"

# The packages: this folder's, the emulated host's, or apt-get download.
mkdir -p "$OUT/debs"
fetch() { # glob package
	local f
	for f in "$OUT"/debs/$1 /var/tmp/libvmm-vmhost/debs/$1; do
		[ -f "$f" ] && { [ "$(dirname "$f")" = "$OUT/debs" ] || cp "$f" "$OUT/debs/"; return 0; }
	done
	(cd "$OUT/debs" && apt-get -o APT::Sandbox::User=root download -qq "$2" >&2) ||
		die "apt-get download $2 failed: the Linux guest needs Debian's $2 package"
	ls "$OUT"/debs/$1 >/dev/null 2>&1 || die "apt-get download $2 left no $1"
}
fetch "linux-image-$KVER-unsigned_*.deb" "$KPKG-unsigned"
fetch 'busybox-static_*.deb' busybox-static

X=$OUT/x
rm -rf "$X" && mkdir -p "$X/kernel" "$X/bb"
dpkg -x "$(ls "$OUT"/debs/linux-image-"$KVER"-unsigned_*.deb | head -n1)" "$X/kernel"
dpkg -x "$(ls "$OUT"/debs/busybox-static_*.deb | head -n1)" "$X/bb"
cp "$X/kernel/boot/vmlinuz-$KVER" "$OUT/vmlinuz.new"
BB=$X/bb/bin/busybox

# The initramfs: busybox and /init. Applets are linked by init itself (--install).
R=$X/root
mkdir -p "$R/bin" "$R/dev" "$R/proc" "$R/sys" "$R/tmp" "$R/lib/modules"
cp "$BB" "$R/bin/busybox"
K=$X/kernel/lib/modules/$KVER/kernel
for m in virtio/virtio virtio/virtio_ring virtio/virtio_mmio; do
	cp "$K/drivers/$m.ko" "$R/lib/modules/"
done
cp "$K/drivers/block/virtio_blk.ko" "$K/drivers/char/hw_random/virtio-rng.ko" "$R/lib/modules/"
# virtio_net and what it depends on (net_failover, failover: modinfo's depends=).
cp "$K/net/core/failover.ko" "$K/drivers/net/net_failover.ko" "$K/drivers/net/virtio_net.ko" \
	"$R/lib/modules/"
ln -s busybox "$R/bin/sh"
cp "$HERE/init" "$R/init"
chmod 755 "$R/init" "$R/bin/busybox"
(cd "$R" && find . -mindepth 1 | LC_ALL=C sort | "$BB" cpio -o -H newc -R 0:0 2>/dev/null) >"$OUT/initramfs.cpio.new"
mv "$OUT/vmlinuz.new" "$OUT/vmlinuz"
mv "$OUT/initramfs.cpio.new" "$OUT/initramfs.cpio"
rm -rf "$X"
echo "$STAMP" >"$OUT/stamp"
echo "$OUT/vmlinuz"; echo "$OUT/initramfs.cpio"
