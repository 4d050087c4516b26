#!/usr/bin/env bash
# The stock Linux guest (tests/guests/linux) with a virtio-net on a tap
# (`vmm run --net tap=NAME,mac=MAC`), all in a private network namespace (unshare -n):
# the host side of the tap is 10.0.2.2/24 and serves a numbered line per TCP connection
# on port 8080. Debian's virtio_net (loaded by init) must bind the device with the MAC
# given; the guest pings the host (at least 8 of 10 answered) and fetches line 1 with
# busybox nc. Mid-workload (its counter), `vmm snapshot --stop` saves the machine and
# `vmm restore --net` (the same tap, opened again) carries it on: the counter goes on
# without a gap, and the restored guest pings again and fetches line 2 over the same
# device. Then the verdict is ok and vmm exits 0.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
require_cmd ip
require_cmd unshare
require_cmd python3
use_tmp /tmp/vmm-linux-net.XXXXXX
mac=52:54:00:12:34:56
count=15

linux_guest
cmdline="$(linux_cmdline 1 2000) guest_virtio=1 guest_net=10.0.2.15/24:10.0.2.2 guest_count=$count"
# Everything that touches the tap runs in the namespace; results land in $tmp.
cat >"$tmp/netns.sh" <<EOF
. "$(dirname "$0")/lib.sh"
tmp=$tmp
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
n = 0
while True:
    c, _ = s.accept()
    n += 1
    c.sendall(b"libvmm-net-%d\n" % n)
    c.close()
' &
server=\$!
"$VMM_CLI" run --control "$tmp/v.sock" --memory 256M --net "tap=vmmtap0,mac=$mac" \
  --initrd "$initrd" --cmdline "$cmdline" "$kernel" >"$tmp/before" 2>"$tmp/before.err" &
vm=\$!
wait_line "$tmp/before" "^count 3" || echo "no count 3" >>"$tmp/before.err"
"$VMM_CLI" snapshot "$tmp/v.sock" "$tmp/v.snap" --stop >"$tmp/snap.out" 2>"$tmp/snap.err"
echo \$? >"$tmp/snap.rc"
wait \$vm
echo \$? >"$tmp/run.rc"
"$VMM_CLI" restore --net "tap=vmmtap0,mac=$mac" "$tmp/v.snap" >"$tmp/after" 2>"$tmp/after.err"
echo \$? >"$tmp/restore.rc"
kill \$server
EOF
clean() { cat "$@" | tr -d '\r'; }
timeout -k 10 $((180 * slow)) unshare -n bash "$tmp/netns.sh" >"$tmp/netns.out" 2>&1
rc() { cat "$tmp/$1.rc" 2>/dev/null || echo none; }
# The counter's lines before the snapshot and after the restore, joined.
counts() { clean "$tmp/before" "$tmp/after" | sed -n 's/^count \([0-9]*\)$/\1/p' | tr '\n' ' '; }
if expect "vmm run --net, then snapshot --stop mid-count: both exit 0 (run $(rc run), snapshot $(rc snap))" \
    [ "$(rc run)" = 0 -a "$(rc snap)" = 0 ] &&
  expect "the guest's eth0 is virtio_net with MAC $mac" \
    grep -q "linux-guest: net eth0 $mac driver virtio_net" <(clean "$tmp/before") &&
  expect "the guest pinged the host through the tap" \
    grep -q "linux-guest: net1 ping 10.0.2.2: \(8\|9\|10\) of 10 answered" <(clean "$tmp/before") &&
  expect "the guest fetched the host's first line over TCP" \
    grep -q "linux-guest: net1 fetched 'libvmm-net-1'" <(clean "$tmp/before") &&
  expect "the snapshot was taken mid-count" bash -c '! tr -d "\r" <"$0" | grep -q "^count $1\$"' "$tmp/before" "$count"; then
  :
else
  tail -n 30 "$tmp/before"; show "$tmp/before.err"; show "$tmp/snap.err"; show "$tmp/netns.out"
fi
if expect "vmm restore --net: exit 0 (got $(rc restore))" [ "$(rc restore)" = 0 ] &&
  expect "restored: the counter went on without a gap" [ "$(counts)" = "$(seq 1 $count | tr '\n' ' ')" ] &&
  expect "restored: the guest pinged the host again" \
    grep -q "linux-guest: net2 ping 10.0.2.2: \(8\|9\|10\) of 10 answered" <(clean "$tmp/after") &&
  expect "restored: the guest fetched the second line" \
    grep -q "linux-guest: net2 fetched 'libvmm-net-2'" <(clean "$tmp/after") &&
  expect "restored: verdict ok" grep -q '^linux-guest: verdict ok' <(clean "$tmp/after"); then
  :
else
  echo "counts: $(counts)"; tail -n 30 "$tmp/after"; show "$tmp/after.err"; show "$tmp/netns.out"
fi
summary
