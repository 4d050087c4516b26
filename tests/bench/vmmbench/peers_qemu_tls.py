"""QEMU's own migration, plain and TLS (tls-creds-x509, mutual), as peer rows of the tls phase.

The guest never runs (-S): the data path of a migration does not depend on the accelerator
for a paused guest, so TCG serves on a host without KVM. Its RAM holds the same content as
tls_bench's (tls_bench --dump), loaded by `-device loader` at 1 MiB; the destination's RAM
is compared with that file in sampled chunks (pmemsave) after every migration.
"""
from .plumbing import *  # noqa: F401,F403 (stdlib modules, constants, helpers)
from . import plumbing
from .peers import Qmp, quit_qemu

TLS_HOST = "localhost"
# TLS 1.3 AES-128-GCM only, the suite libvmm negotiates, so both rows pay the same cipher.
# (QEMU's default is GnuTLS's system priority, which may pick AES-256-GCM.)
TLS_PRIORITY = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM"


def make_qemu_certs(d):
    """A CA, a server and a client certificate in QEMU's layout (ca-cert.pem, server-cert.pem,
    server-key.pem, client-cert.pem, client-key.pem), made with the openssl CLI."""
    os.makedirs(d, exist_ok=True)

    def ossl(*a):
        rc, out, err = run(["openssl"] + list(a), 60)
        if rc != 0:
            raise BenchError("openssl %s: %s" % (a[0], err[-300:]))
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", d + "/ca-key.pem", "-out", d + "/ca-cert.pem", "-days", "2",
         "-subj", "/CN=bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for who, eku in (("server", "serverAuth"), ("client", "clientAuth")):
        ext = os.path.join(d, who + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=%s\nsubjectAltName=DNS:%s,IP:127.0.0.1\n" % (eku, TLS_HOST))
        ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "%s/%s-key.pem" % (d, who), "-out", "%s/%s.csr" % (d, who),
             "-subj", "/CN=%s" % TLS_HOST)
        ossl("x509", "-req", "-in", "%s/%s.csr" % (d, who), "-CA", d + "/ca-cert.pem",
             "-CAkey", d + "/ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", ext,
             "-out", "%s/%s-cert.pem" % (d, who))
    return d


FILL_PART = 1 << 30  # QEMU's loader takes an image of under 2 GiB (its size is an int)


def fill_parts(fill_file):
    """(guest address, file) pairs that put fill_file at 1 MiB: the file itself, or for
    one of 2 GiB and more, 1 GiB pieces cut from it (kept beside it while it is unchanged:
    the bench rewrites the file for each content)."""
    size = os.path.getsize(fill_file)
    if size < 2 * FILL_PART:
        return [(0x100000, fill_file)]
    parts = []
    with open(fill_file, "rb") as f:
        for i, off in enumerate(range(0, size, FILL_PART)):
            part = "%s.part%d" % (fill_file, i)
            if not os.path.exists(part) or os.path.getmtime(part) < os.path.getmtime(fill_file):
                f.seek(off)
                with open(part + ".tmp", "wb") as g:
                    left = min(FILL_PART, size - off)
                    while left:
                        buf = f.read(min(left, 64 << 20))
                        g.write(buf)
                        left -= len(buf)
                os.rename(part + ".tmp", part)
            parts.append((0x100000 + off, part))
    return parts


class PausedQemu:
    """qemu-system-x86_64 -accel tcg -S: RAM filled from a file, never started."""

    def __init__(self, name, mem_mib, fill_file=None, incoming=False, tls_dir=None,
                 endpoint=None):
        self.name = name
        self.sock = os.path.join(plumbing.CTX.tmp, "%s-%d.qmp" % (name, time.time_ns()))
        args = [QEMU, "-accel", "tcg", "-machine", "pc", "-m", str(mem_mib), "-smp", "1",
                "-S", "-nodefaults", "-no-user-config", "-display", "none",
                "-qmp", "unix:%s,server=on,wait=off" % self.sock]
        if fill_file:
            for addr, part in fill_parts(fill_file):
                args += ["-device", "loader,file=%s,addr=%#x,force-raw=on" % (part, addr)]
        if incoming:
            args += ["-incoming", "defer"]
        if tls_dir:
            args += ["-object", "tls-creds-x509,id=tls0,dir=%s,endpoint=%s,verify-peer=on,"
                     "priority=%s" % (tls_dir, endpoint, TLS_PRIORITY)]
        self.logfile = plumbing.CTX.logpath(name)
        self.err = open(self.logfile, "w")
        self.p = track(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.err,
                                        stderr=self.err))
        try:
            self.qmp = Qmp(self.sock, timeout=120)
        except BenchError:
            kill_proc(self.p)
            raise BenchError("%s did not start: %s" % (name, open(self.logfile).read()[-300:]))

    def setup(self, tls, channels):
        """Capabilities and parameters; both sides must agree."""
        self.qmp.cmd("migrate-set-capabilities", capabilities=[
            {"capability": "multifd", "state": channels > 0}])
        params = {"max-bandwidth": 100 * 1000 * MIB}  # the default cap is 32 MiB/s
        if channels > 0:
            params["multifd-channels"] = channels
        if tls:
            params["tls-creds"] = "tls0"
            params["tls-hostname"] = TLS_HOST
        self.qmp.cmd("migrate-set-parameters", **params)

    def quit(self):
        quit_qemu(self)


def check_dest(dst, fill_file, fill_bytes, chunks=8, chunk=4 * MIB):
    """The destination's RAM equals the file at chunks spread over it (first, last, between)."""
    out = os.path.join(plumbing.CTX.tmp, "qemu-tls-check.bin")
    step = (fill_bytes - chunk) // (chunks - 1)
    with open(fill_file, "rb") as f:
        for i in range(chunks):
            off = i * step
            rm(out)
            dst.qmp.cmd("pmemsave", val=0x100000 + off, size=chunk, filename=out)
            f.seek(off)
            want = f.read(chunk)
            with open(out, "rb") as g:
                got = g.read()
            if got != want:
                rm(out)
                raise BenchError("QEMU destination RAM differs from the source at +%#x" % off)
    rm(out)


def qemu_tls_migrate(fill_file, fill_mib, tls, channels, tls_dir):
    """One migration of a paused QEMU with fill_mib MiB of content at 1 MiB (RAM fill_mib+16
    MiB: the low MiB and a margin stay zero, sent as zero pages). channels 0: one stream,
    else multifd with that many channels. MB/s: the filled bytes over QEMU's total-time."""
    mem = fill_mib + 16
    src = PausedQemu("qemu-tls-src", mem, fill_file=fill_file,
                     tls_dir=tls_dir if tls else None, endpoint="client")
    dst = None
    try:
        dst = PausedQemu("qemu-tls-dst", mem, incoming=True,
                         tls_dir=tls_dir if tls else None, endpoint="server")
        for side in (src, dst):
            side.setup(tls, channels)
        port = free_port()
        dst.qmp.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
        t0 = time.time()
        src.qmp.cmd("migrate", uri="tcp:127.0.0.1:%d" % port)
        deadline = t0 + 600
        while True:
            info = src.qmp.cmd("query-migrate")
            st = info.get("status")
            if st == "completed":
                break
            if st in ("failed", "cancelled"):
                raise BenchError("QEMU migration %s: %s\n%s" % (
                    st, info.get("error-desc"), open(dst.logfile).read()[-300:]))
            if time.time() > deadline:
                raise BenchError("QEMU migration not done within 600 s")
            time.sleep(0.02)
        # the destination has loaded everything once it leaves inmigrate
        while dst.qmp.cmd("query-status")["status"] == "inmigrate":
            if time.time() > deadline:
                raise BenchError("QEMU destination still inmigrate after 600 s")
            time.sleep(0.01)
        t1 = time.time()
        check_dest(dst, fill_file, fill_mib * MIB)
        ram = info.get("ram", {})
        # QEMU 7.2 has reported total-time 0 for a completed one-stream TLS migration:
        # then the time from the migrate command to the destination leaving inmigrate.
        total_ms = info.get("total-time") or None
        timing = "total-time" if total_ms else "wall"
        total_ms = total_ms or round((t1 - t0) * 1e3)
        return {"tls": "cert" if tls else "off", "conns": max(channels, 1),
                "multifd": channels > 0, "mem_mib": fill_mib, "ok": True,
                "total_ms": total_ms, "timing": timing, "setup_ms": info.get("setup-time"), "wall_ms": round((t1 - t0) * 1e3, 1),
                "mbps": round(fill_mib * MIB / 1e6 / (total_ms / 1e3)) if total_ms else None,
                "transferred": ram.get("transferred"), "ram_total": ram.get("total"),
                "normal_pages": ram.get("normal"), "duplicate_pages": ram.get("duplicate")}
    finally:
        if dst:
            dst.quit()
        src.quit()
