#!/usr/bin/env bash
# tests/vmhost/build.sh [DIR]: prepares the emulated KVM host that run.sh boots, in DIR
# (default $VMM_VMHOST_DIR, else /var/tmp/libvmm-vmhost: outside the checkout, so fresh
# clones on one machine share it). Everything comes from Debian's packages, fetched with
# `apt-get download` and unpacked with `dpkg -x`; nothing is installed into /boot and the
# machine's apt sources stay as they are:
#   DIR/qemu/       QEMU 10 from bookworm-backports (7.2's TCG does not intercept a nested
#                   guest's XSETBV: KVM then keeps XCR0=1 for its guest and AVX faults)
#   DIR/vmlinux     the current linux-image-*-amd64 kernel, uncompressed (booted through
#                   its PVH entry: unpacking the bzImage's XZ under TCG costs ~3 s a boot)
#   DIR/kernel/     the whole kernel package (its bzImage serves as a stock L2 guest)
#   DIR/initrd.img  busybox, the modules init loads, init and keeper
# Does nothing when DIR already holds what this version of the scripts makes (a stamp of
# their contents and the kernel version). Needs root for apt. Prints one line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-${VMM_VMHOST_DIR:-/var/tmp/libvmm-vmhost}}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
log() { echo "vmhost: $*" >&2; }

# One builder at a time (two `make` runs may start together); the others wait, then find
# the stamp current.
exec 9>"$OUT/.lock"
flock 9

apt_retry() { # apt or dpkg may be busy with another process: wait and retry
	for i in $(seq 30); do "$@" && return 0; log "apt busy, retrying ($i)"; sleep 10; done
	return 1
}

KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$KPKG" ]; then
	apt_retry apt-get update -qq
	KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
fi
KVER=${KPKG#linux-image-}
STAMP="$KVER $(cat "$HERE/build.sh" "$HERE/init" "$HERE/keeper.c" | sha256sum | cut -c1-16)"
if [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$STAMP" ] &&
	[ -f "$OUT/vmlinux" ] && [ -f "$OUT/initrd.img" ] && [ -x "$OUT/qemu/usr/bin/qemu-system-x86_64" ]; then
	exit 0
fi
log "building the emulated KVM host in $OUT (kernel $KVER; once per machine, under a minute)"
rm -f "$OUT/stamp"

# QEMU 10 takes its shared libraries from bookworm's own qemu-system-x86 (and its
# firmware from its own data package), so that one must be installed.
command -v qemu-system-x86_64 >/dev/null ||
	apt_retry env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >/dev/null
command -v xz >/dev/null || apt_retry env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xz-utils >/dev/null
command -v gcc >/dev/null || apt_retry env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc >/dev/null

# bookworm-backports through a private sources list and lists folder.
A=$OUT/apt
mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$A/debs"
echo "deb http://deb.debian.org/debian bookworm-backports main" >"$A/sources.list"
AO=(-o Dir::Etc::sourcelist="$A/sources.list" -o Dir::Etc::sourceparts=/nonexistent
	-o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache" -o Debug::NoLocking=1
	-o APT::Sandbox::User=root)
if ! ls "$A"/debs/qemu-system-x86_*.deb >/dev/null 2>&1; then
	apt_retry apt-get "${AO[@]}" update -qq
	(cd "$A/debs" && apt_retry apt-get "${AO[@]}" download -qq qemu-system-x86/bookworm-backports \
		qemu-system-data/bookworm-backports seabios/bookworm-backports)
fi
rm -rf "$OUT/qemu"
for d in "$A"/debs/*.deb; do dpkg -x "$d" "$OUT/qemu"; done
"$OUT/qemu/usr/bin/qemu-system-x86_64" --version >/dev/null

mkdir -p "$OUT/debs"
(cd "$OUT/debs" &&
	{ ls linux-image-"$KVER"-unsigned_*.deb >/dev/null 2>&1 || apt_retry apt-get -o APT::Sandbox::User=root download -qq "$KPKG-unsigned"; } &&
	{ ls busybox-static_*.deb >/dev/null 2>&1 || apt_retry apt-get -o APT::Sandbox::User=root download -qq busybox-static; })
rm -rf "$OUT/kernel" "$OUT/bb" "$OUT/initramfs"
dpkg -x "$OUT"/debs/linux-image-"$KVER"-unsigned_*.deb "$OUT/kernel"
dpkg -x "$OUT"/debs/busybox-static_*.deb "$OUT/bb"
BB=$OUT/bb/bin/busybox
MODS=lib/modules/$KVER
"$BB" depmod -b "$OUT/kernel" "$KVER"

# The modules init loads, with what they depend on: KVM, 9p over virtio (this machine's
# files), virtio-serial (the command's output), veth/tc/tun (network namespace tests).
R=$OUT/initramfs
mkdir -p "$R"/{bin,dev,proc,sys,mnt/root,keep,"$MODS"}
add_mod() {
	local line f
	line=$(grep -E "/$1\.ko(\.xz)?:" "$OUT/kernel/$MODS/modules.dep") || { log "no module $1"; exit 1; }
	for f in ${line%%:*} ${line#*:}; do
		[ -e "$R/$MODS/$f" ] && continue
		mkdir -p "$R/$MODS/$(dirname "$f")" && cp "$OUT/kernel/$MODS/$f" "$R/$MODS/$f"
	done
}
for m in kvm-amd kvm-intel virtio_pci virtio_console 9pnet_virtio 9p veth sch_tbf sch_htb sch_netem tun vhost_net; do
	add_mod "$m"
done
cp "$OUT/kernel/$MODS"/modules.builtin* "$OUT/kernel/$MODS/modules.order" "$R/$MODS/"
"$BB" depmod -b "$R" "$KVER"
mknod -m 600 "$R/dev/console" c 5 1
cp "$BB" "$R/bin/busybox"
install -m 755 "$HERE/init" "$R/init"
gcc -static -O2 -o "$R/bin/keeper" "$HERE/keeper.c"
(cd "$R" && find . | "$BB" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$OUT/initrd.img"

# The bzImage's payload is XZ: find its magic and unpack from there (xz stops at the end
# of the stream; the trailing bytes make tail see SIGPIPE, hence `|| true`).
BZ=$OUT/kernel/boot/vmlinuz-$KVER
OFF=$(LC_ALL=C grep -m1 -obUaP '\xfd7zXZ\x00' "$BZ" | cut -d: -f1)
(tail -c +$((OFF + 1)) "$BZ" || true) | xz -dc --single-stream >"$OUT/vmlinux.new"
mv "$OUT/vmlinux.new" "$OUT/vmlinux"
echo "$STAMP" >"$OUT/stamp"
log "ready: $("$OUT/qemu/usr/bin/qemu-system-x86_64" --version | head -1), kernel $KVER"
