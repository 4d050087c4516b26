# Sourced by the shell tests in this folder (bash): the skip rule, the emulation slowdown,
# pass/fail counting and the waits they share. Not a test itself (tests/CMakeLists.txt
# runs test_*.sh only).
# Environment (set by ctest): VMM_CLI, VMM_GUEST_DIR, VMM_SOURCE_DIR, VMM_BINARY_DIR,
# VMM_SANITIZE; VMM_TEST_EMULATED=1 inside the emulated KVM host (tests/vmhost).

. "$(dirname "${BASH_SOURCE[0]}")/../vmhost/kvm_usable.sh"

# Exit 77 (ctest's skip) where no guest can run.
require_kvm() { kvm_usable || { echo "SKIP: /dev/kvm not usable"; exit 77; }; }
# Fail (not skip) when a tool `make deps` installs is missing.
require_cmd() { # command
  command -v "$1" >/dev/null || { echo "FAIL: $1 missing (make deps installs it)"; exit 1; }
}

# Deadlines stretch tenfold in the emulated KVM host; what is checked does not change.
slow=1
[ "${VMM_TEST_EMULATED:-}" != 1 ] || slow=10

pass=0 fail=0
ok() { pass=$((pass+1)); echo "ok   $1"; }
bad() { fail=$((fail+1)); echo "FAIL $1"; }
expect() { # name, condition...
  local name=$1; shift
  if "$@"; then ok "$name"; else bad "$name"; return 1; fi
}
# The closing line ctest's log is read for; the status is the verdict.
summary() { echo "$pass passed, $fail failed"; [ "$fail" = 0 ]; }
show() { echo "--- $1"; cat "$1" 2>/dev/null; }

# A scratch folder ($tmp) and the background processes ($pids) ended and removed on exit.
use_tmp() { # mktemp template
  tmp=$(mktemp -d "$1")
  pids=()
  trap _lib_cleanup EXIT
}
_lib_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$tmp"
}

# Waits (secs times $slow, default 10) for a UNIX socket to appear.
wait_socket() { # path [secs]
  for _ in $(seq $(( ${2:-10} * 10 * slow ))); do [ -S "$1" ] && return 0; sleep 0.1; done
  return 1
}
# Waits (30 s times $slow at most) for a line matching regex in a file.
wait_line() { # file regex
  for _ in $(seq $((300 * slow))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
# Waits (secs times $slow, default 10) for a background process to exit; sets $rc, or
# "timeout" after killing it.
wait_exit() { # pid [secs]
  for _ in $(seq $(( ${2:-10} * 10 * slow ))); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then rc=timeout; kill -9 "$1"; wait "$1" 2>/dev/null; return; fi
  wait "$1"; rc=$?
}

# vmm run --control SOCK ARGS... in the background, output to OUT; sets $vmpid once the
# socket is there.
start_vm() { # sock out vmm-run-args...
  local sock=$1 out=$2; shift 2
  "$VMM_CLI" run --control "$sock" "$@" >"$out" 2>"$out.err" &
  vmpid=$!
  pids+=("$vmpid")
  wait_socket "$sock" && return 0
  echo "socket $sock never appeared:"; show "$out.err"
  return 1
}
# True when the Python expression holds for d, the JSON document in the file (json.load
# refuses trailing data: the file holds exactly one document).
json_has() { # file expression
  python3 -c "import json, sys; d = json.load(open(sys.argv[1])); sys.exit(not ($2))" "$1"
}
# The HTTP status of a raw request to the control socket; the body lands in $tmp/body.
http() { # sock method endpoint [curl args...]
  local sock=$1 method=$2 ep=$3; shift 3
  curl -s -m $((10 * slow)) -o "$tmp/body" -w '%{http_code}' --unix-socket "$sock" -X "$method" "$@" \
    "http://localhost/api/v1/$ep"
}

# The stock Linux guest (tests/guests/linux): sets $kernel and $initrd, fetching Debian's
# packages once; fails (never skips) when they cannot be had. Needs use_tmp first.
linux_guest() {
  if ! bash "$VMM_SOURCE_DIR/tests/guests/linux/build.sh" >"$tmp/paths" 2>"$tmp/build.err"; then
    cat "$tmp/build.err"
    echo "FAIL: the stock Linux guest could not be prepared (Debian's kernel and busybox-static through apt-get download)"
    exit 1
  fi
  kernel=$(sed -n 1p "$tmp/paths") initrd=$(sed -n 2p "$tmp/paths")
}

# Its kernel command line for CPUS vCPUs hashing WORK numbers (init checks the md5).
# quiet: every console byte is a VM exit; no_timer_check: the I/O APIC timer test costs
# time and proves nothing here; tsc=reliable: no clocksource watchdog on an emulated host.
linux_cmdline() { # cpus work
  echo "console=ttyS0 quiet panic=-1 tsc=reliable no_timer_check guest_cpus=$1" \
    "guest_work=$2 guest_md5=$(seq 1 "$2" | md5sum | cut -d' ' -f1)"
}
