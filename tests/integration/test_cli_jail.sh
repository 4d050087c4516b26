#!/usr/bin/env bash
# The jail (--jail DIR --uid U --gid G; examples/vmm/cli_jail.h) around real guests: a
# jailed vmm run prints what an unjailed one prints; its VMM runs as U in DIR with its own
# /dev/kvm, under the sandbox as well; its control socket is where the caller asked, 0600
# and the caller's, and is gone after the exit; a snapshot asked for through it lands in
# DIR (a path inside the jail) and restores in another jail to the uninterrupted run's
# result; a live migration into a jailed vmm receive verifies memcheck there, in clear
# and over TLS with key files the jailed user could not read. The jail's
# parts one by one (namespaces, mounts, uid, signals) are tests/unit/test_cli_jail.c.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
require_kvm
g=$VMM_GUEST_DIR
use_tmp /tmp/vmm-jail.XXXXXX
U=65534 G=65534
jail() { mkdir -p "$tmp/$1" && chown $U:$G "$tmp/$1" && echo --jail "$tmp/$1" --uid $U --gid $G; }

# --- the same output in a jail
for args in "--cmdline count=30 counter.elf" "--cpus 2 --cmdline cpus=2,iters=20000 smp.elf"; do
  set -- $args; k=${!#}; set -- "${@:1:$#-1}"
  "$VMM_CLI" run "${@//,/ }" "$g/$k" >"$tmp/plain.out" 2>"$tmp/plain.err"; s1=$?
  "$VMM_CLI" run $(jail "j-$k") "${@//,/ }" "$g/$k" >"$tmp/j.out" 2>"$tmp/j.err"; s2=$?
  expect "$k: same status jailed ($s2) as not ($s1)" [ "$s1" = "$s2" ]
  expect "$k: same output jailed" cmp -s "$tmp/plain.out" "$tmp/j.out" ||
    { show "$tmp/j.out"; show "$tmp/j.err"; }
done

# --- a jailed run with a control socket: who it is, where it is, a snapshot into the jail
# (40 counts: at 20, a machine busy with builds ended the guest before the snapshot did)
want=$("$VMM_CLI" run --cmdline "count=40" "$g/counter.elf" | tail -n1)
if start_vm "$tmp/s" "$tmp/run.out" $(jail run) --cmdline "count=40 interval=$((100000 * slow))" "$g/counter.elf"; then
  expect "control socket is 0600 and root's" [ "$(stat -c %a:%u "$tmp/s")" = 600:0 ]
  wait_line "$tmp/run.out" '^count 3$'
  jailed=$(pgrep -P "$vmpid" | head -n1)
  expect "the VMM runs as uid $U" grep -q "^Uid:[[:space:]]*$U[[:space:]]*$U[[:space:]]*$U" "/proc/$jailed/status"
  expect "the VMM runs under seccomp" grep -q '^Seccomp:[[:space:]]*2' "/proc/$jailed/status"
  expect "its / is the jail" [ "$(stat -c %i "/proc/$jailed/root/")" = "$(stat -c %i "$tmp/run")" ]
  expect "its /dev holds only kvm" [ "$(ls "/proc/$jailed/root/dev")" = kvm ]
  "$VMM_CLI" snapshot "$tmp/s" /c.snap >/dev/null 2>"$tmp/snap.err" || { bad "snapshot into the jail"; show "$tmp/snap.err"; }
  expect "the snapshot is in the jail, the jail user's" [ "$(stat -c %u "$tmp/run/c.snap" 2>&1)" = $U ]
  wait_exit "$vmpid" 60
  expect "jailed run exits 0 ($rc)" [ "$rc" = 0 ] || show "$tmp/run.out.err"
  expect "control socket removed" [ ! -e "$tmp/s" ]
  expect "jail's /dev is empty again" [ -z "$(ls -A "$tmp/run/dev")" ]
  "$VMM_CLI" restore $(jail restore) "$tmp/run/c.snap" >"$tmp/r.out" 2>"$tmp/r.err"; rc=$?
  expect "jailed restore: exit 0 ($rc), ends as the uninterrupted run" \
    [ "$rc" = 0 -a "$(tail -n1 "$tmp/r.out")" = "$want" ] || { show "$tmp/r.out"; show "$tmp/r.err"; }
fi

# --- a live migration into a jailed vmm receive
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$VMM_CLI" receive $(jail rx) "127.0.0.1:$port" >"$tmp/rx.out" 2>"$tmp/rx.err" &
rxpid=$!; pids+=("$rxpid")
wait_line "$tmp/rx.err" "receiving on"
if start_vm "$tmp/m" "$tmp/src.out" --memory 64M --cmdline "mem=16 gens=$((4 + 4 * (slow > 1))) rate=8" "$g/memcheck.elf"; then
  wait_line "$tmp/src.out" '^memcheck gen 1 ok'
  "$VMM_CLI" migrate "$tmp/m" "127.0.0.1:$port" --connections 2 >/dev/null 2>"$tmp/mig.err"; rc=$?
  expect "migration into the jail exits 0 ($rc)" [ "$rc" = 0 ] || show "$tmp/mig.err"
  wait_exit "$rxpid" 120
  expect "destination finishes in the jail: memcheck done ok, exit 0 ($rc)" \
    [ "$rc" = 0 -a "$(tail -n1 "$tmp/rx.out" | tr -d '\r')" = "memcheck done ok" ] || { show "$tmp/rx.out"; show "$tmp/rx.err"; }
fi
# --- over TLS 1.3 with certificates whose keys only root can read: the jailed receive
# read them before it dropped to $U
mkcreds() { # dir: ca.pem, and dest/ src/ tls-dir layouts (SANs NAME.test and 127.0.0.1)
  local d=$1 who; mkdir -p "$d/dest" "$d/src"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$d/ca.key" -out "$d/ca.pem" -subj /CN=vmm-jail-test-ca 2>/dev/null || return 1
  for who in dest src; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$who.test" \
      -keyout "$d/$who/key.pem" -out "$d/$who.csr" 2>/dev/null || return 1
    printf 'subjectAltName=DNS:%s.test,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' \
      "$who" >"$d/$who.ext"
    openssl x509 -req -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -days 2 -extfile "$d/$who.ext" -out "$d/$who/cert.pem" 2>/dev/null || return 1
    cp "$d/ca.pem" "$d/$who/ca.pem"; chmod 600 "$d/$who/key.pem"
  done
}
expect "test credentials made" mkcreds "$tmp/creds"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$VMM_CLI" receive $(jail rxtls) --tls-dir "$tmp/creds/dest" --tls-peer src.test "127.0.0.1:$port" \
  >"$tmp/rxt.out" 2>"$tmp/rxt.err" &
rxpid=$!; pids+=("$rxpid")
wait_line "$tmp/rxt.err" "receiving on"
if start_vm "$tmp/mt" "$tmp/srct.out" --memory 64M --cmdline "mem=16 gens=$((3 + 3 * (slow > 1))) rate=8" "$g/memcheck.elf"; then
  wait_line "$tmp/srct.out" '^memcheck gen 1 ok'
  "$VMM_CLI" migrate "$tmp/mt" "127.0.0.1:$port" --tls-dir "$tmp/creds/src" --tls-peer dest.test \
    >"$tmp/migt.out" 2>"$tmp/migt.err"; rc=$?
  expect "TLS migration into the jail exits 0 ($rc)" [ "$rc" = 0 ] || { show "$tmp/migt.out"; show "$tmp/migt.err"; }
  wait_exit "$rxpid" 120
  expect "destination finishes in the jail over TLS: memcheck done ok, exit 0 ($rc)" \
    [ "$rc" = 0 -a "$(tail -n1 "$tmp/rxt.out" | tr -d '\r')" = "memcheck done ok" ] || { show "$tmp/rxt.out"; show "$tmp/rxt.err"; }
fi
"$VMM_CLI" run --jail "$tmp/run" "$g/hello.elf" 2>"$tmp/e.err"; rc=$?
expect "--jail without --uid refused (2: $rc)" bash -c '[ "$0" = 2 ] && grep -q "needs --uid" "$1"' "$rc" "$tmp/e.err"
summary
