#!/usr/bin/env bash
# The stock Linux guest (tests/guests/linux) with a virtio-net on a tap
# (`vmm run --net tap=NAME,mac=MAC`), all in a private network namespace (unshare -n):
# the host side of the tap is 10.0.2.2/24 and serves one line on TCP 8080. Debian's
# virtio_net (loaded by init) must bind the device with the MAC given, the guest pings
# the host (at least 8 of 10 answered) and fetches the line with busybox nc; then the
# guest's verdict is ok and vmm exits 0.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
require_cmd ip
require_cmd unshare
require_cmd python3
use_tmp /tmp/vmm-linux-net.XXXXXX
mac=52:54:00:12:34:56

linux_guest
cmdline="$(linux_cmdline 1 2000) guest_virtio=1 guest_net=10.0.2.15/24:10.0.2.2"
cat >"$tmp/netns.sh" <<EOF
set -e
ip link set lo up
ip tuntap add dev vmmtap0 mode tap
ip addr add 10.0.2.2/24 dev vmmtap0
ip link set vmmtap0 up
python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.0.2.2", 8080))
s.listen(4)
while True:
    c, _ = s.accept()
    c.sendall(b"libvmm-net-4242\n")
    c.close()
' &
server=\$!
set +e
"$VMM_CLI" run --memory 256M --net "tap=vmmtap0,mac=$mac" --initrd "$initrd" \
  --cmdline "$cmdline" "$kernel"
rc=\$?
kill \$server
exit \$rc
EOF
clean() { tr -d '\r' <"$1"; }
timeout $((120 * slow)) unshare -n bash "$tmp/netns.sh" >"$tmp/out" 2>"$tmp/err"
rc=$?
if expect "vmm run --net: exit 0 (got $rc)" [ "$rc" = 0 ] &&
  expect "the guest's eth0 is virtio_net with MAC $mac" \
    grep -q "linux-guest: net eth0 $mac driver virtio_net" <(clean "$tmp/out") &&
  expect "the guest pinged the host through the tap" \
    grep -q "linux-guest: net ping 10.0.2.2: \(8\|9\|10\) of 10 answered" <(clean "$tmp/out") &&
  expect "the guest fetched the host's line over TCP" \
    grep -q "linux-guest: net fetched 'libvmm-net-4242'" <(clean "$tmp/out") &&
  expect "verdict ok" grep -q '^linux-guest: verdict ok' <(clean "$tmp/out"); then
  :
else
  tail -n 30 "$tmp/out"; show "$tmp/err"
fi
summary
