#!/usr/bin/python3
"""libvmm benchmarks against the physical limits and QEMU 7.2, measured in one run.

Called by tests/bench/run.sh (make bench). Figures only: a benchmark fails when a run fails
(a tool errors, a guest does not verify), never on time. Every figure is the median of at
least three runs with min-max; libvmm and QEMU runs alternate (the machine is shared).

Writes <out>/report.md, <out>/report.json (every raw run) and PNG plots in <out>;
scratch files live in <out>/tmp and are deleted; process logs stay in <out>/logs.
"""
import argparse
import atexit
import datetime
import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback

QEMU = "/usr/bin/qemu-system-x86_64"
MIB = 1 << 20


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------- plumbing

class Ctx:
    def __init__(self, args):
        self.build = os.path.abspath(args.build)
        self.out = os.path.abspath(args.out)
        self.tmp = os.path.join(self.out, "tmp")
        self.logs = os.path.join(self.out, "logs")
        self.bench = os.path.abspath(args.vmm_bench)
        self.guests = os.path.abspath(args.guests)
        self.fill = os.path.join(self.guests, "fill.elf")
        self.memcheck = os.path.join(self.guests, "memcheck.elf")
        self.runs = args.runs
        self.quick = args.quick
        self.procs = []          # every child we started, killed at the end
        self.results = {}        # report.json
        self.notes = []          # remarks for the report
        self.failures = []
        self.t_start = time.time()
        os.makedirs(self.tmp, exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)
        self.nlog = 0

    def logpath(self, name):
        self.nlog += 1
        return os.path.join(self.logs, "%03d-%s.log" % (self.nlog, name))

    def add(self, section, key, value):
        self.results.setdefault(section, {}).setdefault(key, []).append(value)

    def get(self, section, key):
        return self.results.get(section, {}).get(key, [])


CTX = None


def log(msg):
    el = time.time() - CTX.t_start if CTX else 0
    print("[bench %6.1fs] %s" % (el, msg), flush=True)


def track(p):
    CTX.procs.append(p)
    return p


def kill_proc(p, grace=3.0):
    """SIGTERM, then SIGKILL, always reaped."""
    if p.poll() is not None:
        return
    try:
        p.terminate()
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
    except ProcessLookupError:
        pass


def cleanup_all():
    if not CTX:
        return
    for p in reversed(CTX.procs):
        try:
            kill_proc(p, 2.0)
        except Exception:
            pass
    CTX.procs = []


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def evict(path):
    """Flush a file and drop it from the page cache: every restore reads from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rm(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def disk_bytes(path):
    return os.stat(path).st_blocks * 512


def run(cmd, timeout, **kw):
    p = track(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw))
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_proc(p)
        raise BenchError("%s: timed out after %ss" % (" ".join(cmd), timeout))
    return p.returncode, out, err


def stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


# --------------------------------------------------------------------------- vmm_bench

class VmmProc:
    """One vmm_bench process: JSON lines on stdout, commands on stdin."""

    def __init__(self, args, name):
        self.name = name
        self.logfile = CTX.logpath(name)
        self.err = open(self.logfile, "w")
        self.p = track(subprocess.Popen([CTX.bench] + args, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self.err, text=True,
                                        bufsize=1))
        self.q = queue.Queue()
        self.events = []
        self.rounds = []
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for line in self.p.stdout:
            self.q.put(line)
        self.q.put(None)

    def tail(self):
        try:
            with open(self.logfile) as f:
                return "".join(f.readlines()[-8:])
        except OSError:
            return ""

    def expect(self, event, timeout):
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                raise BenchError("%s: no '%s' within %ss\n%s" % (self.name, event, timeout, self.tail()))
            try:
                line = self.q.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            if line is None:
                self.p.wait(10)
                raise BenchError("%s: exited (%s) before '%s'\n%s" % (self.name, self.p.returncode,
                                                                       event, self.tail()))
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            self.events.append(obj)
            if obj.get("event") == "round":
                self.rounds.append(obj)
                continue
            if obj.get("event") == "error" or (obj.get("event") == event and not obj.get("ok", True)):
                raise BenchError("%s: %s" % (self.name, obj.get("error") or obj))
            if obj.get("event") == event:
                return obj

    def cmd(self, line, event, timeout):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.expect(event, timeout)

    def finish(self, timeout=30):
        try:
            if self.p.poll() is None:
                try:
                    self.p.stdin.write("quit\n")
                    self.p.stdin.flush()
                except (BrokenPipeError, ValueError):
                    pass
                self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_proc(self.p)
        self.err.close()
        return self.p.returncode

    def kill(self):
        kill_proc(self.p)
        self.err.close()


def vmm_oneshot(args, name, event, timeout):
    """Runs vmm_bench to completion; returns the events named `event`."""
    v = VmmProc(args, name)
    out = []
    try:
        while True:
            try:
                out.append(v.expect(event, timeout))
            except BenchError as e:
                if v.p.poll() is not None and v.p.returncode == 0 and out:
                    break
                if "exited (0)" in str(e) and out:
                    break
                raise
    finally:
        rc = v.finish(timeout)
    if rc != 0:
        raise BenchError("%s exited %s\n%s" % (name, rc, v.tail()))
    return out, v


# --------------------------------------------------------------------------- QEMU

class Qmp:
    def __init__(self, path, timeout=20):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > deadline:
                    raise BenchError("QMP socket %s did not come up" % path)
                time.sleep(0.01)
        self.s.settimeout(timeout)
        self.f = self.s.makefile("rw")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        line = self.f.readline()
        if not line:
            raise BenchError("QMP connection closed")
        return json.loads(line)

    def cmd(self, execute, **arguments):
        msg = {"execute": execute}
        if arguments:
            msg["arguments"] = arguments
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            r = self._read()
            if "event" in r:
                continue
            if "error" in r:
                raise BenchError("QMP %s: %s" % (execute, r["error"].get("desc")))
            return r.get("return")

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


class Qemu:
    def __init__(self, name, mem_mib, kernel, append, incoming=None):
        self.name = name
        self.serial = os.path.join(CTX.tmp, "%s-%d.serial" % (name, time.time_ns()))
        self.sock = os.path.join(CTX.tmp, "%s-%d.qmp" % (name, time.time_ns()))
        args = [QEMU, "-enable-kvm", "-cpu", "host,-arch-capabilities", "-machine", "pc",
                "-m", str(mem_mib), "-smp", "1", "-nodefaults", "-no-user-config",
                "-display", "none", "-kernel", kernel, "-append", append,
                "-serial", "file:" + self.serial,
                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-qmp", "unix:%s,server=on,wait=off" % self.sock]
        if incoming:
            args += ["-incoming", incoming]
        self.logfile = CTX.logpath(name)
        self.err = open(self.logfile, "w")
        self.t_spawn = time.time()
        self.p = track(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.err,
                                        stderr=self.err))
        self.qmp = Qmp(self.sock)

    def serial_text(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_serial(self, text, timeout, count=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.serial_text()
            if "EXCEPTION" in s or "CORRUPT" in s or "FAILED" in s or "too big" in s:
                raise BenchError("%s: guest failed: %s" % (self.name, s[-300:]))
            if s.count(text) >= count:
                return
            if self.p.poll() is not None:
                raise BenchError("%s: QEMU exited %s: %s" % (self.name, self.p.returncode, s[-300:]))
            time.sleep(0.05)
        raise BenchError("%s: no '%s' on the serial port within %ss" % (self.name, text, timeout))

    def status(self):
        return self.qmp.cmd("query-status")["status"]

    def wait_status(self, want, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.status()
            if st == want:
                return
            if st in ("internal-error", "guest-panicked", "shutdown"):
                raise BenchError("%s: status %s" % (self.name, st))
            time.sleep(0.002)
        raise BenchError("%s: not %s within %ss" % (self.name, want, timeout))

    def stop(self):
        self.qmp.cmd("stop")

    def cont(self):
        self.qmp.cmd("cont")

    def verify_full(self, timeout=300):
        """NMI -> the fill guest checks all of its memory and prints verify ok/FAILED."""
        before = self.serial_text().count("verify ok")
        self.qmp.cmd("inject-nmi")
        self.wait_serial("verify ok", timeout, before + 1)

    def children(self):
        kids = []
        try:
            for tid in os.listdir("/proc/%d/task" % self.p.pid):
                with open("/proc/%d/task/%s/children" % (self.p.pid, tid)) as f:
                    kids += f.read().split()
        except OSError:
            pass
        return kids

    def migrate(self, uri, timeout=600, poll=0.02, samples=None):
        """Starts an outgoing migration and polls query-migrate until it completes."""
        t0 = time.time()
        self.qmp.cmd("migrate", uri=uri)
        deadline = t0 + timeout
        while True:
            info = self.qmp.cmd("query-migrate")
            st = info.get("status")
            if samples is not None and "ram" in info:
                samples.append({"t_ms": (time.time() - t0) * 1e3, "status": st,
                                "ram": info["ram"]})
            if st == "completed":
                return t0, info
            if st in ("failed", "cancelled"):
                raise BenchError("%s: migration %s: %s" % (self.name, st, info.get("error-desc")))
            if time.time() > deadline:
                raise BenchError("%s: migration not done within %ss" % (self.name, timeout))
            time.sleep(poll)

    def quit(self):
        try:
            self.qmp.cmd("quit")
        except Exception:
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            kill_proc(self.p)
        self.qmp.close()
        self.err.close()
        rm(self.sock)

    def remove(self):
        self.quit()
        rm(self.serial)


def fill_append(mem_mib, pattern, tick=50):
    return "mem=%d pattern=%s tick=%d seed=1" % (fill_mib(mem_mib), pattern, tick)


def fill_mib(mem_mib):
    return mem_mib - 16 if mem_mib > 64 else mem_mib // 2


# --------------------------------------------------------------------------- libvirt

class Libvirt:
    """A hand-started libvirtd (and virtlogd) on this host's QEMU, or the reason it cannot."""

    def __init__(self):
        self.ok = False
        self.reason = ""
        self.started = []
        self.uri = "qemu:///system"

    def virsh(self, *args, timeout=300):
        rc, out, err = run(["virsh", "-c", self.uri] + list(args), timeout)
        if rc != 0:
            raise BenchError("virsh %s: %s" % (" ".join(args), (err or out).strip()))
        return out

    def start(self):
        try:
            if not shutil.which("libvirtd") or not shutil.which("virsh"):
                raise BenchError("libvirtd/virsh not installed")
            conf = "/etc/libvirt/qemu.conf"
            text = open(conf).read()
            if not re.search(r'^\s*user\s*=\s*"root"', text, re.M) or \
               not re.search(r'^\s*group\s*=\s*"root"', text, re.M):
                with open(conf, "a") as f:
                    f.write('\n# added by libvmm tests/bench/run.sh: QEMU as root (no systemd)\n'
                            'user = "root"\ngroup = "root"\n')
                CTX.notes.append("libvirt: appended user/group = \"root\" to %s" % conf)
            alive = False
            if os.path.exists("/run/libvirt/libvirt-sock"):
                rc, _, _ = run(["virsh", "-c", self.uri, "version"], 20)
                alive = rc == 0
            if not alive:
                for daemon, sock in (("virtlogd", "/run/libvirt/virtlogd-sock"),
                                     ("libvirtd", "/run/libvirt/libvirt-sock")):
                    lf = open(CTX.logpath(daemon), "w")
                    p = track(subprocess.Popen([daemon], stdin=subprocess.DEVNULL, stdout=lf,
                                               stderr=lf))
                    self.started.append(p)
                    deadline = time.time() + 20
                    while not os.path.exists(sock):
                        if p.poll() is not None:
                            raise BenchError("%s exited %s (see %s)" % (daemon, p.returncode, lf.name))
                        if time.time() > deadline:
                            raise BenchError("%s: no socket %s after 20 s" % (daemon, sock))
                        time.sleep(0.05)
            deadline = time.time() + 30
            while True:
                rc, out, err = run(["virsh", "-c", self.uri, "version"], 20)
                if rc == 0:
                    break
                if time.time() > deadline:
                    raise BenchError("virsh version: %s" % err.strip())
                time.sleep(0.2)
            self.ok = True
            m = re.search(r"Running hypervisor: (.*)", out)
            self.version = out.strip().splitlines()[1] if len(out.strip().splitlines()) > 1 else ""
            if m:
                self.version += "; " + m.group(1)
        except Exception as e:  # libvirt is optional: the report says why it is missing
            self.ok = False
            self.reason = str(e)
            log("libvirt unavailable: %s" % e)
        return self.ok

    def define(self, name, mem_mib, kernel, cmdline, serial):
        xml = """<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>%s</name>
  <memory unit='MiB'>%d</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>%s</kernel>
    <cmdline>%s</cmdline>
  </os>
  <cpu mode='host-passthrough' check='none' migratable='on'>
    <feature policy='disable' name='arch-capabilities'/>
  </cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>%s</emulator>
    <serial type='file'>
      <source path='%s' append='on'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-device'/>
    <qemu:arg value='isa-debug-exit,iobase=0xf4,iosize=0x04'/>
  </qemu:commandline>
</domain>
""" % (name, mem_mib, kernel, cmdline, QEMU, serial)
        path = os.path.join(CTX.tmp, name + ".xml")
        with open(path, "w") as f:
            f.write(xml)
        self.virsh("define", path)
        rm(path)

    def remove(self, name):
        for args in (("destroy", name), ("undefine", name)):
            try:
                self.virsh(*args, timeout=60)
            except Exception:
                pass

    def stop(self):
        for p in reversed(self.started):
            kill_proc(p, 10)
        self.started = []


class LibvirtDomain:
    def __init__(self, lv, name, mem_mib, pattern):
        self.lv = lv
        self.name = name
        self.serial = os.path.join(CTX.tmp, name + ".serial")
        rm(self.serial)
        lv.remove(name)
        lv.define(name, mem_mib, CTX.fill, fill_append(mem_mib, pattern), self.serial)
        lv.virsh("start", name)

    def serial_text(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def wait_serial(self, text, timeout, count=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.serial_text()
            if "EXCEPTION" in s or "FAILED" in s:
                raise BenchError("libvirt guest failed: %s" % s[-300:])
            if s.count(text) >= count:
                return
            time.sleep(0.05)
        raise BenchError("libvirt %s: no '%s' within %ss" % (self.name, text, timeout))

    def verify_full(self, timeout=300):
        before = self.serial_text().count("verify ok")
        self.lv.virsh("inject-nmi", self.name)
        self.wait_serial("verify ok", timeout, before + 1)

    def remove(self):
        self.lv.remove(self.name)
        rm(self.serial)


# --------------------------------------------------------------------------- machine

def machine_info():
    info = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "kernel": platform.release(), "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / (1 << 20), 1)
    except OSError:
        pass
    mods = []
    for m in ("kvm_pvm", "kvm_intel", "kvm_amd", "kvm"):
        if os.path.isdir("/sys/module/" + m):
            mods.append(m)
    info["kvm"] = ("KVM-PVM (kvm_pvm: shadow paging, ring 0 emulated)" if "kvm_pvm" in mods
                   else ", ".join(mods) or "unknown")
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    info["cpu_virt_ext"] = "vmx" if " vmx" in flags else "svm" if " svm" in flags else "none"
    try:
        info["thp"] = open("/sys/kernel/mm/transparent_hugepage/enabled").read().strip()
        info["thp_shmem"] = open("/sys/kernel/mm/transparent_hugepage/shmem_enabled").read().strip()
    except OSError:
        pass
    try:
        rc, out, _ = run([QEMU, "--version"], 20)
        info["qemu"] = out.splitlines()[0]
    except Exception:
        info["qemu"] = "?"
    rc, out, _ = run(["df", "-T", CTX.tmp], 20)
    info["bench_disk"] = " ".join(out.splitlines()[-1].split()[:2]) if rc == 0 else "?"
    try:
        cache = open(os.path.join(CTX.build, "CMakeCache.txt")).read()
        m = re.search(r"^CMAKE_BUILD_TYPE:STRING=(.*)$", cache, re.M)
        info["build_type"] = m.group(1) if m else "?"
    except OSError:
        info["build_type"] = "?"
    return info


# --------------------------------------------------------------------------- phases

def phase_physical():
    """dd oflag=direct, iperf3 single stream, memcpy and first touch; runs interleaved."""
    log("physical limits: dd, iperf3, memcpy, first touch")
    for r in range(CTX.runs):
        path = os.path.join(CTX.tmp, "dd.img")
        rc, out, err = run(["dd", "if=/dev/zero", "of=" + path, "bs=1M", "count=2048",
                            "oflag=direct"], 300)
        if rc != 0:
            rm(path)
            raise BenchError("dd: " + err)
        m = re.search(r"(\d+) bytes.*copied, ([\d.]+) s", err)
        CTX.add("physical", "dd_direct_mb_s", {"run": r, "bytes": int(m.group(1)),
                                               "s": float(m.group(2)),
                                               "mb_s": int(m.group(1)) / 1e6 / float(m.group(2))})
        # and read back around the page cache (what a restore could get from the disk)
        rc, out, err = run(["dd", "if=" + path, "of=/dev/null", "bs=1M", "iflag=direct"], 300)
        rm(path)
        if rc != 0:
            raise BenchError("dd: " + err)
        m = re.search(r"(\d+) bytes.*copied, ([\d.]+) s", err)
        CTX.add("physical", "dd_read_direct_mb_s", {"run": r, "bytes": int(m.group(1)),
                                                    "s": float(m.group(2)),
                                                    "mb_s": int(m.group(1)) / 1e6 / float(m.group(2))})
        port = free_port()
        srv = track(subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.3)
        rc, out, err = run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", "5", "-J"], 60)
        try:
            srv.wait(10)
        except subprocess.TimeoutExpired:
            kill_proc(srv)
        if rc != 0:
            raise BenchError("iperf3: " + (err or out)[-300:])
        j = json.loads(out)
        bps = j["end"]["sum_received"]["bits_per_second"]
        CTX.add("physical", "iperf3_mb_s", {"run": r, "mb_s": bps / 8 / 1e6})
        evs, _ = vmm_oneshot(["membw", "--size", "2048", "--runs", "1"], "membw", "first_touch", 120)
        memcpy_ev = [e for e in _.events if e.get("event") == "memcpy"]
        for e in memcpy_ev:
            CTX.add("physical", "memcpy_gb_s", {"run": r, "gb_s": e["gb_s"]})
        for e in evs:
            CTX.add("physical", "first_touch_%s_gb_s" % e["kind"], {"run": r, "gb_s": e["gb_s"]})


def libvmm_restore(path, mode, verify, tag, cold=True):
    if cold:
        evict(path)
    evs, v = vmm_oneshot(["restore", "--file", path, "--mode", mode, "--verify", verify],
                         "restore-" + tag, "restore", 300)
    res = evs[0]
    ver = [e for e in v.events if e.get("event") == "verify"]
    if verify != "none":
        if not ver or not ver[0]["ok"]:
            raise BenchError("restored guest did not verify")
        res["verify"] = ver[0]["line"]
    return res


def qemu_save(q, path, live=False):
    """QEMU's snapshot of a running VM: (stop,) migrate to "exec:cat > FILE", wait for cat,
    fsync. The VM is left paused (stopped, or postmigrate after a live save)."""
    rm(path)
    q.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 100 * 1000 * MIB})
    q.cont()
    t0 = time.time()
    if not live:
        q.stop()
    _, info = q.migrate("exec:cat > " + path)
    deadline = time.time() + 60
    while q.children() and time.time() < deadline:
        time.sleep(0.005)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    t1 = time.time()
    return {"ms": (t1 - t0) * 1e3, "qemu_total_ms": info.get("total-time"),
            "downtime_ms": info.get("downtime"), "file_bytes": os.path.getsize(path),
            "disk_bytes": disk_bytes(path), "live": live}


def qemu_restore(path, mem_mib, append, verify):
    evict(path)
    t0 = time.time()
    q = Qemu("qemu-restore", mem_mib, CTX.fill, append, incoming="exec:cat " + path)
    try:
        # The stream carries the source's run state (paused by the save): wait for the
        # incoming migration to complete, then cont.
        deadline = time.time() + 300
        while True:
            st = q.qmp.cmd("query-migrate").get("status")
            if st == "completed":
                break
            if st == "failed" or time.time() > deadline:
                raise BenchError("QEMU restore: incoming migration %s" % st)
            time.sleep(0.002)
        t_loaded = time.time()
        q.cont()
        q.wait_status("running", 60)
        t1 = time.time()
        res = {"restore_ms": (t1 - t0) * 1e3, "loaded_ms": (t_loaded - t0) * 1e3,
               "from": "process spawn to status running (incoming completed, then cont)"}
        if verify:
            q.verify_full()
            res["verify"] = "verify ok full"
        return res
    finally:
        q.remove()


def phase_snapshot(contents, lv):
    mem = 2048
    for content in contents:
        log("snapshot: %d MiB, %s" % (mem, content))
        lfile = os.path.join(CTX.tmp, "libvmm-%s.snap" % content)
        qfile = os.path.join(CTX.tmp, "qemu-%s.mig" % content)
        vfile = os.path.join(CTX.tmp, "libvirt-%s.sav" % content)
        cfile = os.path.join(CTX.tmp, "libvmm-%s.zsnap" % content)
        vs = VmmProc(["save", "--mem", str(mem), "--pattern", content, "--stdin"], "save-" + content)
        q = Qemu("qemu-fill-" + content, mem, CTX.fill, fill_append(mem, content))
        dom = None
        if lv.ok:
            try:
                dom = LibvirtDomain(lv, "vmmbench-%s-%d" % (content, os.getpid()), mem, content)
            except Exception as e:
                lv.ok = False
                lv.reason = "defining/starting a domain failed: %s" % e
                log("libvirt: " + lv.reason)
        try:
            booted = vs.expect("booted", 600)
            CTX.add("snapshot", "fill_ms_libvmm_" + content, booted["fill_ms"])
            vs.expect("ready", 30)
            q.wait_serial("fill done", 600)
            if dom:
                dom.wait_serial("fill done", 600)
            # Idle fill guests busy-poll: only the VM being measured may run.
            vs.cmd("pause", "paused", 30)
            q.stop()
            if dom:
                lv.virsh("suspend", dom.name)
            for r in range(CTX.runs):
                last = r == CTX.runs - 1
                # libvmm save, eager restore
                vs.cmd("resume", "resumed", 30)
                s = vs.cmd("save " + lfile, "save", 300)
                vs.cmd("pause", "paused", 30)
                s["content"] = content
                CTX.add("snapshot", "libvmm_save_" + content, s)
                res = libvmm_restore(lfile, "eager", "full" if last else "sampled", "eager")
                res["content"] = content
                CTX.add("snapshot", "libvmm_restore_eager_" + content, res)
                log("  libvmm save %.0f ms (%.0f MB/s), eager restore %.0f ms" %
                    (s["ms"], s["mb_s"], res["restore_ms"]))
                if not (content == "random" and last):
                    rm(lfile)
                # QEMU save, restore
                qs = qemu_save(q, qfile)
                qs["mb_s"] = mem * MIB / 1e6 / (qs["ms"] / 1e3)
                CTX.add("snapshot", "qemu_save_" + content, qs)
                qr = qemu_restore(qfile, mem, fill_append(mem, content), verify=last)
                qr["mb_s"] = mem * MIB / 1e6 / (qr["restore_ms"] / 1e3)
                CTX.add("snapshot", "qemu_restore_" + content, qr)
                rm(qfile)
                log("  QEMU save %.0f ms, restore %.0f ms" % (qs["ms"], qr["restore_ms"]))
                # libvirt save, restore (the domain lives on through the restore)
                if dom and lv.ok:
                    try:
                        rm(vfile)
                        lv.virsh("resume", dom.name)
                        t0 = time.time()
                        lv.virsh("save", dom.name, vfile)
                        t1 = time.time()
                        size, dsize = os.path.getsize(vfile), disk_bytes(vfile)
                        evict(vfile)
                        t2 = time.time()
                        lv.virsh("restore", vfile)
                        t3 = time.time()
                        rm(vfile)
                        ent = {"save_ms": (t1 - t0) * 1e3, "restore_ms": (t3 - t2) * 1e3,
                               "file_bytes": size, "disk_bytes": dsize,
                               "save_mb_s": mem * MIB / 1e6 / (t1 - t0)}
                        if last:
                            dom.verify_full()
                            ent["verify"] = "verify ok full"
                        lv.virsh("suspend", dom.name)
                        CTX.add("snapshot", "libvirt_" + content, ent)
                        log("  libvirt save %.0f ms, restore %.0f ms" % (ent["save_ms"], ent["restore_ms"]))
                    except BenchError as e:
                        lv.ok = False
                        lv.reason = "virsh save/restore failed: %s" % e
                        log("libvirt: " + lv.reason)
                # libvmm compressed
                vs.cmd("resume", "resumed", 30)
                c = vs.cmd("save %s compress" % cfile, "save", 600)
                vs.cmd("pause", "paused", 30)
                CTX.add("snapshot", "libvmm_save_compressed_" + content, c)
                rm(cfile)
            if content == "random":
                for r in range(CTX.runs):
                    vs.cmd("resume", "resumed", 30)
                    s = vs.cmd("save %s.live live" % lfile, "save", 300)
                    vs.cmd("pause", "paused", 30)
                    CTX.add("snapshot", "libvmm_save_live_random", s)
                    rm(lfile + ".live")
                    qs = qemu_save(q, qfile, live=True)
                    CTX.add("snapshot", "qemu_save_live_random", qs)
                    rm(qfile)
            vs.cmd("resume", "resumed", 30)
            vs.cmd("verify full", "verify", 300)
        finally:
            vs.finish()
            q.remove()
            if dom:
                dom.remove()
            for f in (qfile, vfile, cfile):
                rm(f)


def phase_lazy(sizes):
    """Lazy restore to the first guest instruction by RAM size (goal: < 5 ms, flat)."""
    files = {}
    try:
        for mem in sizes:
            path = os.path.join(CTX.tmp, "lazy-%d.snap" % mem)
            if mem == 2048 and os.path.exists(os.path.join(CTX.tmp, "libvmm-random.snap")):
                os.rename(os.path.join(CTX.tmp, "libvmm-random.snap"), path)
            else:
                fill = fill_mib(mem) if mem <= 4096 else 4096
                log("lazy restore: making a %d MiB snapshot (%d MiB random)" % (mem, fill))
                evs, _ = vmm_oneshot(["save", "--mem", str(mem), "--fill", str(fill), "--pattern",
                                      "random", "--file", path], "lazysave-%d" % mem, "save", 900)
            files[mem] = path
        for r in range(CTX.runs):
            for mem in sizes:
                res = libvmm_restore(files[mem], "lazy", "sampled" if r == CTX.runs - 1 else "none",
                                     "lazy-%d" % mem)
                res["mem_mib"] = mem
                CTX.add("lazy", "lazy_%d" % mem, res)
                # again with the file still in the page cache (a hot snapshot, as for clones)
                w = libvmm_restore(files[mem], "lazy", "none", "lazywarm-%d" % mem, cold=False)
                w["mem_mib"] = mem
                CTX.add("lazy_warm", "lazy_%d" % mem, w)
                log("  lazy %d MiB: restore %.2f ms, first instruction %.2f ms (cold), %.2f ms (warm)" %
                    (mem, res["restore_ms"], res["first_insn_ms"], w["first_insn_ms"]))
        return files
    except Exception:
        for f in files.values():
            rm(f)
        raise


def phase_clone(path):
    for r in range(CTX.runs):
        for n in (1, 10, 100):
            evs, _ = vmm_oneshot(["clone", "--file", path, "--n", str(n)], "clone-%d" % n, "clone", 600)
            CTX.add("clone", "clone_%d" % n, evs[0])
            log("  %d clones: %.2f ms per clone to running, %.2f ms to first instruction, %.0f kB private each" %
                (n, evs[0]["restore_start_ms_mean"], evs[0]["first_insn_ms_mean"],
                 evs[0]["private_kb_per_clone"]))


def phase_small():
    log("VM creation to first instruction, pause/resume")
    for mem in (256, 2048):
        evs, _ = vmm_oneshot(["create-first-insn", "--mem", str(mem), "--runs", str(max(5, CTX.runs))],
                             "create-%d" % mem, "create_first_insn", 120)
        for e in evs:
            CTX.add("small", "create_first_insn_%d" % mem, e)
    for r in range(CTX.runs):
        evs, _ = vmm_oneshot(["pause-resume", "--n", "200"], "pause-resume", "pause_resume", 120)
        CTX.add("small", "pause_resume", evs[0])


LIBVMM_MODES = [("raw1", 1, "off"), ("raw2", 2, "off"), ("auto1", 1, "auto")]
QEMU_MODES = [("plain", {}), ("multifd2", {"multifd-channels": 2}),
              ("multifd2_zstd", {"multifd-channels": 2, "multifd-compression": "zstd"})]


def qemu_migrate_hop(src, mem, append, mode_params, samples=None, verify=False):
    """src -> a new QEMU on this host; returns (result, destination)."""
    port = free_port()
    dst = Qemu("qemu-dst", mem, CTX.fill, append, incoming="defer")
    try:
        multifd = "multifd-channels" in mode_params
        for side in (src, dst):
            side.qmp.cmd("migrate-set-capabilities", capabilities=[
                {"capability": "multifd", "state": multifd}])
            params = {"max-bandwidth": 100 * 1000 * MIB}
            if multifd:
                params["multifd-channels"] = mode_params["multifd-channels"]
                params["multifd-compression"] = mode_params.get("multifd-compression", "none")
            side.qmp.cmd("migrate-set-parameters", **params)
        dst.qmp.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
        t0, info = src.migrate("tcp:127.0.0.1:%d" % port, samples=samples)
        t_src = time.time()
        dst.wait_status("running", 120)
        t1 = time.time()
        ram = info.get("ram", {})
        res = {"wall_ms": (t1 - t0) * 1e3, "src_done_ms": (t_src - t0) * 1e3,
               "qemu_total_ms": info.get("total-time"), "downtime_ms": info.get("downtime"),
               "setup_ms": info.get("setup-time"), "transferred": ram.get("transferred"),
               "duplicate_pages": ram.get("duplicate"), "normal_pages": ram.get("normal"),
               "dirty_sync_count": ram.get("dirty-sync-count"),
               "mb_s": mem * MIB / 1e6 / (t1 - t0)}
        if verify:
            dst.verify_full()
            res["verify"] = "verify ok full"
        return res, dst
    except Exception:
        dst.remove()
        raise


def phase_migrate(contents):
    mem = 2048
    for content in contents:
        log("migration: %d MiB, %s" % (mem, content))
        src = VmmProc(["save", "--mem", str(mem), "--pattern", content, "--stdin"], "msrc-" + content)
        q = Qemu("qemu-msrc-" + content, mem, CTX.fill, fill_append(mem, content))
        cur = src
        try:
            src.expect("booted", 600)
            src.expect("ready", 30)
            q.wait_serial("fill done", 600)
            # Idle fill guests busy-poll: only the VM being migrated runs.
            q.stop()
            cur.cmd("pause", "paused", 30)
            hops = [(r, lm, qm) for r in range(CTX.runs) for lm, qm in zip(LIBVMM_MODES, QEMU_MODES)]
            for i, (r, (lname, conns, comp), (qname, qparams)) in enumerate(hops):
                last = i == len(hops) - 1
                # libvmm: the VM moves to a new process, which sends it on next time
                dst = VmmProc(["migrate-recv", "--port", "0", "--stdin"], "mdst-" + content)
                try:
                    port = dst.expect("listening", 30)["port"]
                    cur.cmd("resume", "resumed", 30)
                    cur.rounds = []
                    s = cur.cmd("send %d %d %s" % (port, conns, comp), "send", 600)
                    s["rounds_detail"] = cur.rounds
                    recv = dst.expect("received", 120)
                    s["dst_start_to_insn_ms"] = recv["start_to_insn_ms"]
                    dst.expect("ready", 30)
                    cur.expect("gone", 30)
                    dst.cmd("pause", "paused", 30)
                except Exception:
                    dst.kill()
                    raise
                cur.finish()
                cur = dst
                s["content"] = content
                CTX.add("migrate", "libvmm_%s_%s" % (lname, content), s)
                # QEMU, same guest and contents
                q.cont()
                qr, qd = qemu_migrate_hop(q, mem, fill_append(mem, content), qparams, verify=last)
                q.remove()
                q = qd
                q.stop()
                qr["content"] = content
                CTX.add("migrate", "qemu_%s_%s" % (qname, content), qr)
                log("  run %d: libvmm %s %.0f ms (%.0f MB/s, %d rounds) | QEMU %s %.0f ms (%.0f MB/s)" %
                    (r, lname, s["total_ms"], s["mb_s"], s["rounds"], qname, qr["wall_ms"], qr["mb_s"]))
            cur.cmd("resume", "resumed", 30)
            v = cur.cmd("verify full", "verify", 300)
            CTX.add("migrate", "libvmm_verify_" + content, v)
        finally:
            cur.finish()
            q.remove()


def phase_memcheck():
    mem = 1024
    cmdline = "mem=512 rate=100 gens=2"
    log("memcheck: %d MiB VM, %s, default downtime limits" % (mem, cmdline))
    for r in range(CTX.runs):
        # libvmm
        dst = VmmProc(["migrate-recv", "--port", "0", "--guest", "memcheck", "--wait-exit", "120"],
                      "memcheck-dst")
        try:
            port = dst.expect("listening", 30)["port"]
            src_args = ["migrate-send", "--port", str(port), "--mem", str(mem), "--guest",
                        CTX.memcheck, "--cmdline", cmdline, "--wait-line", "memcheck gen 1 ok"]
            evs, sv = vmm_oneshot(src_args, "memcheck-src", "send", 300)
            s = evs[0]
            s["rounds_detail"] = sv.rounds
            dst.expect("received", 120)
            ex = dst.expect("exit", 150)
            s["guest_exit"] = ex
        finally:
            rc = dst.finish(30)
        if rc != 0:
            raise BenchError("memcheck destination exited %s" % rc)
        CTX.add("memcheck", "libvmm", s)
        # QEMU
        q = Qemu("qemu-memcheck-src", mem, CTX.memcheck, cmdline)
        try:
            q.wait_serial("memcheck gen 1 ok", 120)
            samples = []
            dst_q = None
            port = free_port()
            dst_q = Qemu("qemu-memcheck-dst", mem, CTX.memcheck, cmdline, incoming="defer")
            try:
                q.qmp.cmd("migrate-set-parameters", **{"max-bandwidth": 100 * 1000 * MIB})
                dst_q.qmp.cmd("migrate-incoming", uri="tcp:127.0.0.1:%d" % port)
                t0, info = q.migrate("tcp:127.0.0.1:%d" % port, poll=0.02, samples=samples)
                t_done = time.time()
                dst_q.wait_status("running", 60)
                t1 = time.time()
                dst_q.wait_serial("memcheck done ok", 150)
                dst_q.p.wait(30)
                st = dst_q.p.returncode
                if st != 1:  # isa-debug-exit: (0 << 1) | 1
                    raise BenchError("QEMU memcheck destination exited %s" % st)
                ram = info.get("ram", {})
                qr = {"wall_ms": (t1 - t0) * 1e3, "src_done_ms": (t_done - t0) * 1e3,
                      "qemu_total_ms": info.get("total-time"), "downtime_ms": info.get("downtime"),
                      "rounds": ram.get("dirty-sync-count"), "transferred": ram.get("transferred"),
                      "samples": samples, "exit_status": st}
            finally:
                dst_q.remove()
        finally:
            q.remove()
        CTX.add("memcheck", "qemu", qr)
        log("  run %d: libvmm %.0f ms, %d rounds, downtime %.1f ms | QEMU %.0f ms, %s syncs, downtime %s ms" %
            (r, s["total_ms"], s["rounds"], s["downtime_ms"], qr["wall_ms"], qr["rounds"], qr["downtime_ms"]))


# --------------------------------------------------------------------------- report

def med(vals):
    s = stats(vals)
    return s["median"] if s else None


def fmt(s, unit="", digits=0):
    if not s:
        return "n/a"
    f = "%%.%df" % digits

    def g(v):
        t = f % v
        return t[1:] if t.startswith("-") and float(t) == 0 else t
    return g(s["median"]) + unit + " (" + g(s["min"]) + "–" + g(s["max"]) + ")"


def ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "n/a"
    return ("%%.%df" % digits) % (a / b)


def build_report(info, lv):
    R = CTX.results
    L = []
    phys = R.get("physical", {})
    dd = stats([x["mb_s"] for x in phys.get("dd_direct_mb_s", [])])
    ip = stats([x["mb_s"] for x in phys.get("iperf3_mb_s", [])])
    mc = stats([x["gb_s"] for x in phys.get("memcpy_gb_s", [])])
    ft = {k: stats([x["gb_s"] for x in phys.get("first_touch_%s_gb_s" % k, [])])
          for k in ("anon4k", "anon_thp", "memfd")}
    summary = {}
    # The machine's first-touch limit: the fastest kind of fresh memory measured (libvmm's
    # own memfd RAM is one of the kinds; it is reported separately).
    ftk = [k for k in ft if ft[k]]
    ft_best_kind = max(ftk, key=lambda k: ft[k]["median"]) if ftk else None
    ftb = ft[ft_best_kind] if ft_best_kind else None

    L.append("# libvmm benchmarks\n")
    L.append("%s · %s, %s cores, %s GiB · kernel %s · %s · %s · build %s · bench disk %s\n" % (
        info["date"], info.get("cpu", "?"), info["cores"], info.get("mem_gib", "?"), info["kernel"],
        info["kvm"], info.get("qemu", "?"), info.get("build_type", "?"), info.get("bench_disk", "?")))
    loads = [x["loadavg"][0] for v in R.get("load", {}).values() for x in v]
    if loads:
        L.append("Machine load (1-min load average at phase boundaries, other users' jobs "
                 "included): %.1f–%.1f on %s cores. The machine is shared: absolute figures move "
                 "with it; libvmm/QEMU ratios are from alternating runs.\n" % (min(loads), max(loads), info["cores"]))
    L.append("Every figure: median of %d runs (min–max in brackets), libvmm and QEMU runs "
             "alternating, all on this machine in this run (%.1f min). Ratios use medians. "
             "Times are wall-clock. Raw runs: report.json.\n" % (CTX.runs, (time.time() - CTX.t_start) / 60))

    # ---- headline
    L.append("## Headline\n")
    L.append("| What | libvmm | QEMU 7.2 | libvmm / QEMU | physical limit | libvmm / limit |")
    L.append("|---|---|---|---|---|---|")
    snap = R.get("snapshot", {})
    mig = R.get("migrate", {})

    def row(name, lv_s, q_s, unit, digits, limit_s=None, limit_name="", better="lower"):
        lvm = lv_s["median"] if lv_s else None
        qm = q_s["median"] if q_s else None
        lim = limit_s["median"] if limit_s else None
        L.append("| %s | %s | %s | %s | %s | %s |" % (
            name, fmt(lv_s, unit, digits), fmt(q_s, unit, digits), ratio(lvm, qm),
            (fmt(limit_s, unit, digits) + " " + limit_name) if limit_s else "–",
            ratio(lvm, lim) if limit_s else "–"))

    ddr = stats([x["mb_s"] for x in phys.get("dd_read_direct_mb_s", [])])

    def best_qemu(cands, higher):
        """[(label, stats)] -> the best QEMU-based path by median."""
        c = [(n, s_) for n, s_ in cands if s_]
        if not c:
            return None, None
        return (max if higher else min)(c, key=lambda x: x[1]["median"])

    for content in ("random", "text", "halfzero"):
        rs = stats([x["mb_s"] for x in snap.get("libvmm_save_" + content, [])])
        if not rs:
            continue
        qn, qs = best_qemu([("QMP exec:cat", stats([x["mb_s"] for x in snap.get("qemu_save_" + content, [])])),
                            ("virsh save", stats([x["save_mb_s"] for x in snap.get("libvirt_" + content, [])]))], True)
        L.append("| Save 2 GiB %s, MB/s | %s | %s (%s) | %s | %s dd oflag=direct | %s |" % (
            content, fmt(rs), fmt(qs), qn, ratio(rs["median"], qs["median"] if qs else None),
            fmt(dd), ratio(rs["median"], dd["median"] if dd else None)))
    rlim = None
    if ddr and ftb:
        rlim = min(ddr["median"], ftb["median"] * 1000)
    for content in ("random", "text", "halfzero"):
        rr = stats([x["restore_ms"] for x in snap.get("libvmm_restore_eager_" + content, [])])
        if not rr:
            continue
        qn, qr = best_qemu([("QMP -incoming exec:cat", stats([x["restore_ms"] for x in snap.get("qemu_restore_" + content, [])])),
                            ("virsh restore", stats([x["restore_ms"] for x in snap.get("libvirt_" + content, [])]))], False)
        lim_ms = 2048 * MIB / 1e6 / rlim * 1e3 if rlim else None
        L.append("| Eager restore 2 GiB %s, ms | %s | %s (%s) | %s | %s ms = 2 GiB at min(dd iflag=direct, first touch) | %s |" % (
            content, fmt(rr), fmt(qr), qn, ratio(rr["median"], qr["median"] if qr else None),
            "%.0f" % lim_ms if lim_ms else "n/a", ratio(rr["median"], lim_ms)))
    lz = R.get("lazy", {})
    lzw = R.get("lazy_warm", {})
    for mem in sorted(int(k.split("_")[1]) for k in lz):
        s_ = stats([x["first_insn_ms"] for x in lz["lazy_%d" % mem]])
        w_ = stats([x["first_insn_ms"] for x in lzw.get("lazy_%d" % mem, [])])
        L.append("| Lazy restore %d MiB → first guest instruction, ms (file cold / in page cache) | %s / %s | – | – | goal < 5 | – |" % (
            mem, fmt(s_, "", 2), fmt(w_, "", 2)))
    for content in ("random", "text", "halfzero", "none"):
        best_l = None
        best_q = None
        for lname, _, _ in LIBVMM_MODES:
            s = stats([x["total_ms"] for x in mig.get("libvmm_%s_%s" % (lname, content), [])])
            if s and (best_l is None or s["median"] < best_l[1]["median"]):
                best_l = (lname, s)
        for qname, _ in QEMU_MODES:
            s = stats([x["wall_ms"] for x in mig.get("qemu_%s_%s" % (qname, content), [])])
            if s and (best_q is None or s["median"] < best_q[1]["median"]):
                best_q = (qname, s)
        if best_l and best_q:
            L.append("| Migrate 2 GiB %s, best mode, ms | %s (%s) | %s (%s) | %s | – | – |" % (
                content, fmt(best_l[1]), best_l[0], fmt(best_q[1]), best_q[0],
                ratio(best_l[1]["median"], best_q[1]["median"])))
            summary["migrate_best_%s" % content] = {"libvmm": best_l, "qemu": best_q}
    raw1 = stats([x["mb_s"] for x in mig.get("libvmm_raw1_random", [])])
    lim = None
    if ip and ftb:
        lim_v = min(ip["median"], ftb["median"] * 1000)
        lim = {"median": lim_v, "min": lim_v, "max": lim_v}
    if raw1:
        L.append("| Migrate 2 GiB random, 1 connection raw, MB/s | %s | %s | %s | %s = min(iperf3 %s, first touch %s %s) | %s |" % (
            fmt(raw1), fmt(stats([x["mb_s"] for x in mig.get("qemu_plain_random", [])])),
            ratio(raw1["median"], med([x["mb_s"] for x in mig.get("qemu_plain_random", [])])),
            "%.0f" % lim["median"] if lim else "n/a", fmt(ip), ft_best_kind, fmt(ftb and {k: (v * 1000 if k != "n" else v) for k, v in ftb.items()}),
            ratio(raw1["median"], lim["median"]) if lim else "n/a"))
    mcl = R.get("memcheck", {})
    if mcl:
        a = stats([x["total_ms"] for x in mcl.get("libvmm", [])])
        b = stats([x["wall_ms"] for x in mcl.get("qemu", [])])
        row("memcheck 1 GiB @100 MB/s dirtying: migration, ms", a, b, "", 0)
        a = stats([x["downtime_ms"] for x in mcl.get("libvmm", [])])
        b = stats([x["downtime_ms"] for x in mcl.get("qemu", [])])
        row("memcheck: downtime, ms (limits: libvmm 50, QEMU 300)", a, b, "", 1)
    sm = R.get("small", {})
    if sm:
        s = stats([x["total_ms"] for x in sm.get("create_first_insn_256", [])])
        row("Create → first guest instruction (256 MiB), ms", s, None, "", 2)
        s = stats([x["pause"]["median_us"] for x in sm.get("pause_resume", [])])
        row("Pause latency (median of 200), µs", s, None, "", 1)
    cl = R.get("clone", {})
    if cl.get("clone_100"):
        s = stats([x["first_insn_ms_mean"] for x in cl["clone_100"]])
        row("100 lazy clones: per clone, restore → first instruction, ms", s, None, "", 2)
    L.append("")

    # ---- physical
    L.append("## Physical limits (same run)\n")
    L.append("| Limit | Median (min–max) |")
    L.append("|---|---|")
    L.append("| dd if=/dev/zero bs=1M count=2048 oflag=direct, MB/s | %s |" % fmt(dd))
    ddr = stats([x["mb_s"] for x in phys.get("dd_read_direct_mb_s", [])])
    L.append("| dd of that file to /dev/null iflag=direct, MB/s | %s |" % fmt(ddr))
    L.append("| iperf3 single stream, 127.0.0.1, 5 s, MB/s | %s |" % fmt(ip))
    L.append("| memcpy 2 GiB (pre-faulted), GB/s | %s |" % fmt(mc, "", 2))
    L.append("| first touch of fresh memory, anonymous 4 KiB pages, GB/s | %s |" % fmt(ft["anon4k"], "", 2))
    L.append("| first touch, anonymous + MADV_HUGEPAGE (QEMU's RAM), GB/s | %s |" % fmt(ft["anon_thp"], "", 2))
    L.append("| first touch, shared memfd + MADV_HUGEPAGE (libvmm's RAM), GB/s | %s |" % fmt(ft["memfd"], "", 2))
    L.append("\n(dd issues one 1 MiB O_DIRECT write at a time; libvmm queues several through io_uring, "
             "so its save can exceed the dd figure.)\n")
    L.append("THP: `%s`; shmem THP: `%s` (libvmm's memfd RAM can only get huge pages if the "
             "latter allows it).\n" % (info.get("thp"), info.get("thp_shmem")))

    # ---- snapshot
    if snap:
        L.append("## Snapshot: 2 GiB VM (fill guest, 2032 MiB working set)\n")
        L.append("Save: libvmm `vmm_snapshot_save` (guest paused, file synced) vs QEMU `stop` + "
                 "`migrate \"exec:cat > FILE\"` + fsync + `cont` over QMP"
                 + (" and `virsh save`" if snap.get("libvirt_random") else "") +
                 ". MB/s = VM RAM size / time. Restores read files dropped from the page cache "
                 "(fsync + POSIX_FADV_DONTNEED); libvmm eager restore time is the "
                 "`vmm_snapshot_restore` call, QEMU's is process spawn to QMP status `running` "
                 "with `-incoming \"exec:cat FILE\"` (the migration completes paused, as saved, then "
                 "`cont`); libvirt's is the `virsh restore` call (QEMU reads the file descriptor "
                 "libvirt hands it, no `cat` pipe). halfzero: the guest writes the zero pages, so "
                 "they are allocated zero pages, not holes.\n")
        L.append("| Content | libvmm save MB/s | ÷ dd | QEMU save MB/s | libvmm ÷ QEMU | libvirt save MB/s | libvmm file / disk MB | QEMU file MB | libvmm eager restore ms | QEMU restore ms | libvirt restore ms | libvmm restore ÷ QEMU |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for content in ("random", "text", "halfzero"):
            ls_ = stats([x["mb_s"] for x in snap.get("libvmm_save_" + content, [])])
            if not ls_:
                continue
            q_ = stats([x["mb_s"] for x in snap.get("qemu_save_" + content, [])])
            v_ = stats([x["save_mb_s"] for x in snap.get("libvirt_" + content, [])])
            lr = stats([x["restore_ms"] for x in snap.get("libvmm_restore_eager_" + content, [])])
            qr_ = stats([x["restore_ms"] for x in snap.get("qemu_restore_" + content, [])])
            vr = stats([x["restore_ms"] for x in snap.get("libvirt_" + content, [])])
            lf = snap["libvmm_save_" + content][-1]
            qf = snap.get("qemu_save_" + content, [{}])[-1]
            L.append("| %s | %s | %s | %s | %s | %s | %.0f / %.0f | %s | %s | %s | %s | %s |" % (
                content, fmt(ls_), ratio(ls_["median"], dd["median"] if dd else None), fmt(q_),
                ratio(ls_["median"], q_["median"] if q_ else None), fmt(v_),
                lf["file_bytes"] / 1e6, lf["disk_bytes"] / 1e6,
                "%.0f" % (qf.get("file_bytes", 0) / 1e6) if qf else "n/a",
                fmt(lr), fmt(qr_), fmt(vr), ratio(lr["median"] if lr else None, qr_["median"] if qr_ else None)))
        L.append("")
        L.append("| Content | libvmm eager restore MB/s | libvmm compressed save MB/s | compressed file MB | compression |")
        L.append("|---|---|---|---|---|")
        for content in ("random", "text", "halfzero"):
            lr = stats([x["mb_s"] for x in snap.get("libvmm_restore_eager_" + content, [])])
            cs = stats([x["mb_s"] for x in snap.get("libvmm_save_compressed_" + content, [])])
            cf = stats([x["file_bytes"] / 1e6 for x in snap.get("libvmm_save_compressed_" + content, [])])
            rawf = med([x["file_bytes"] / 1e6 for x in snap.get("libvmm_save_" + content, [])])
            if lr:
                L.append("| %s | %s | %s | %s | %s× smaller than the raw file |" % (
                    content, fmt(lr), fmt(cs), fmt(cf), ratio(rawf, cf["median"] if cf else None, 1)))
        L.append("")
        lvl = stats([x["pause_ms"] for x in snap.get("libvmm_save_live_random", [])])
        qvl = stats([x["downtime_ms"] for x in snap.get("qemu_save_live_random", [])])
        if lvl:
            L.append("Live snapshot of the 2 GiB random VM (guest idling): libvmm pause %s ms "
                     "(total %s ms, rounds %s); QEMU live `migrate exec:` downtime %s ms (total %s ms). "
                     "Ratio %s.\n" % (
                         fmt(lvl, "", 2), fmt(stats([x["ms"] for x in snap["libvmm_save_live_random"]])),
                         fmt(stats([x["rounds"] for x in snap["libvmm_save_live_random"]])),
                         fmt(qvl, "", 1), fmt(stats([x["ms"] for x in snap.get("qemu_save_live_random", [])])),
                         ratio(lvl["median"], qvl["median"] if qvl else None)))
        fills = stats(snap.get("fill_ms_libvmm_random", []) + snap.get("fill_ms_libvmm_text", []) +
                      snap.get("fill_ms_libvmm_halfzero", []))
        if fills:
            L.append("(For scale: the guest filling its 2032 MiB under libvmm took %s ms — "
                     "first touch through shadow paging.)\n" % fmt(fills))
    if not lv.ok:
        L.append("**libvirt**: not measured — %s\n" % (lv.reason or "not attempted"))
    else:
        L.append("libvirt: %s, hand-started libvirtd, domain from XML with `<kernel>` and "
                 "isa-debug-exit through `<qemu:commandline>`; `virsh save`/`virsh restore` "
                 "(default image format, no --bypass-cache).\n" % getattr(lv, "version", ""))

    # ---- lazy
    if lz:
        L.append("## Lazy restore: time to the first guest instruction\n")
        L.append("`vmm_snapshot_restore(LAZY)` call → first heartbeat MMIO after `vmm_vm_start` "
                 "(the guest writes one every 50 µs). Snapshot files dropped from the page cache "
                 "first. Goal: under 5 ms and flat in RAM size.\n")
        L.append("| VM RAM | data in snapshot | restore call ms | start → first instruction ms | total ms (cold file) | total ms (file in page cache) |")
        L.append("|---|---|---|---|---|---|")
        lw = R.get("lazy_warm", {})
        for mem in sorted(int(k.split("_")[1]) for k in lz):
            v = lz["lazy_%d" % mem]
            L.append("| %d MiB | %d MiB random | %s | %s | %s | %s |" % (
                mem, fill_mib(mem) if mem <= 4096 else 4096, fmt(stats([x["restore_ms"] for x in v]), "", 2),
                fmt(stats([x["start_to_insn_ms"] for x in v]), "", 2),
                fmt(stats([x["first_insn_ms"] for x in v]), "", 2),
                fmt(stats([x["first_insn_ms"] for x in lw.get("lazy_%d" % mem, [])]), "", 2)))
        L.append("")

    # ---- migration
    if mig:
        L.append("## Live migration over loopback: 2 GiB VM (fill guest idling)\n")
        L.append("libvmm: `vmm_migrate_send_to` to a `vmm_migrate_receive` in another process; "
                 "time = connect → committed (`total_ns`). QEMU 7.2: destination `-incoming defer` + "
                 "`migrate-incoming tcp:127.0.0.1:PORT` (so multifd can be set on both sides first), "
                 "`max-bandwidth` 100 GB/s (unlimited), default downtime limit; time = `migrate` → "
                 "destination QMP status `running`. MB/s = VM RAM size / time. The VM hops from "
                 "process to process (each destination becomes the next source), so every run "
                 "migrates the same guest and contents into fresh memory; the last destination "
                 "verifies every page.\n")
        L.append("| Content | libvmm 1 conn raw | libvmm 2 conns raw | libvmm 1 conn zstd auto | QEMU plain | QEMU multifd 2 | QEMU multifd 2 + zstd | libvmm best ÷ QEMU best |")
        L.append("|---|---|---|---|---|---|---|---|")
        for content in ("random", "text", "halfzero", "none"):
            cells = []
            for lname, _, _ in LIBVMM_MODES:
                v = mig.get("libvmm_%s_%s" % (lname, content), [])
                s = stats([x["total_ms"] for x in v])
                cells.append("%s ms, %s MB/s" % (fmt(s), "%.0f" % med([x["mb_s"] for x in v])) if s else "n/a")
            for qname, _ in QEMU_MODES:
                v = mig.get("qemu_%s_%s" % (qname, content), [])
                s = stats([x["wall_ms"] for x in v])
                cells.append("%s ms, %s MB/s" % (fmt(s), "%.0f" % med([x["mb_s"] for x in v])) if s else "n/a")
            b = summary.get("migrate_best_%s" % content)
            L.append("| %s | %s | %s |" % ("never-touched" if content == "none" else content,
                                           " | ".join(cells),
                                           ratio(b["libvmm"][1]["median"], b["qemu"][1]["median"]) if b else "n/a"))
        L.append("")
        if ip:
            L.append("Loopback limit: iperf3 %s MB/s; first touch of fresh memory %s GB/s (%s, the "
                     "fastest kind here; libvmm's memfd RAM: %s GB/s). "
                     "libvmm random, 1 connection raw: %s MB/s = %s × min(iperf3, first touch).\n" % (
                         fmt(ip), fmt(ftb, "", 2), ft_best_kind, fmt(ft["memfd"], "", 2), "%.0f" % raw1["median"] if raw1 else "n/a",
                         ratio(raw1["median"] if raw1 else None, lim["median"] if lim else None)))
        L.append("| Content | libvmm rounds (raw1) | libvmm downtime ms (raw1) | libvmm wire MB (auto) | QEMU downtime ms (plain) | QEMU MB transferred (multifd+zstd) |")
        L.append("|---|---|---|---|---|---|")
        for content in ("random", "text", "halfzero", "none"):
            a = mig.get("libvmm_raw1_" + content, [])
            b = mig.get("libvmm_auto1_" + content, [])
            c = mig.get("qemu_plain_" + content, [])
            d = mig.get("qemu_multifd2_zstd_" + content, [])
            if a:
                L.append("| %s | %s | %s | %s | %s | %s |" % (
                    content, fmt(stats([x["rounds"] for x in a])), fmt(stats([x["downtime_ms"] for x in a]), "", 1),
                    fmt(stats([x["wire_bytes"] / 1e6 for x in b])), fmt(stats([x["downtime_ms"] for x in c])),
                    fmt(stats([(x["transferred"] or 0) / 1e6 for x in d]))))
        L.append("")

    # ---- memcheck
    if mcl:
        L.append("## Migration under load: memcheck `mem=512 rate=100 gens=2` in a 1 GiB VM\n")
        L.append("Migration starts when generation 1 is done (all 512 MiB written once); the guest "
                 "keeps rewriting ~100 MB/s and must end with `memcheck done ok` on the destination. "
                 "Each side's default downtime limit (libvmm 50 ms, QEMU 300 ms); QEMU bandwidth "
                 "unlimited. Plot: memcheck_progress.png (QEMU's `ram.remaining` starts at the whole "
                 "1 GiB because it also scans and sends the never-touched pages; libvmm skips them).\n")
        L.append("| | libvmm | QEMU 7.2 | libvmm / QEMU |")
        L.append("|---|---|---|---|")
        a, b = mcl.get("libvmm", []), mcl.get("qemu", [])
        for name, ka, kb, d in (("total time, ms", "total_ms", "wall_ms", 0),
                                ("rounds (QEMU: dirty syncs)", "rounds", "rounds", 0),
                                ("downtime, ms", "downtime_ms", "downtime_ms", 1)):
            sa = stats([x[ka] for x in a])
            sb = stats([x[kb] for x in b if x.get(kb) is not None])
            L.append("| %s | %s | %s | %s |" % (name, fmt(sa, "", d), fmt(sb, "", d),
                                               ratio(sa["median"] if sa else None, sb["median"] if sb else None)))
        L.append("")

    # ---- small
    if sm:
        L.append("## VM lifecycle\n")
        L.append("| | median (min–max) |")
        L.append("|---|---|")
        for mem in (256, 2048):
            v = sm.get("create_first_insn_%d" % mem, [])
            if v:
                L.append("| create + load + start → first instruction, %d MiB, ms | %s (create %s, load %s, boot %s) |" % (
                    mem, fmt(stats([x["total_ms"] for x in v]), "", 2), fmt(stats([x["create_ms"] for x in v]), "", 2),
                    fmt(stats([x["load_ms"] for x in v]), "", 2), fmt(stats([x["boot_ms"] for x in v]), "", 2)))
        pr = sm.get("pause_resume", [])
        if pr:
            L.append("| vmm_vm_pause, µs (median of 200; p99) | %s; p99 %s |" % (
                fmt(stats([x["pause"]["median_us"] for x in pr]), "", 1),
                fmt(stats([x["pause"]["p99_us"] for x in pr]), "", 1)))
            L.append("| vmm_vm_resume, µs (median of 200; p99) | %s; p99 %s |" % (
                fmt(stats([x["resume"]["median_us"] for x in pr]), "", 1),
                fmt(stats([x["resume"]["p99_us"] for x in pr]), "", 1)))
        L.append("")
        L.append("Boot is the fill guest's ring-0 setup (emulated on KVM-PVM, ~1 µs per "
                 "instruction) up to its first ring-3 MMIO write.\n")
    if cl:
        L.append("## Clones (lazy restores of one 256 MiB snapshot, side by side)\n")
        L.append("As examples/api/clone.c; each clone is restored, started, seen executing (first "
                 "heartbeat), then paused so that a hundred busy-polling guests do not starve the "
                 "restores that follow on two cores. Memory = the process's Private_Clean + "
                 "Private_Dirty growth (smaps_rollup) per clone (KVM's kernel memory is not in it; "
                 "MemAvailable deltas are in report.json but too noisy on this shared machine "
                 "to quote).\n")
        L.append("| Clones | restore + start per clone, ms | → first instruction per clone, ms | private memory per clone, kB |")
        L.append("|---|---|---|---|")
        for n in (1, 10, 100):
            v = cl.get("clone_%d" % n, [])
            if v:
                L.append("| %d | %s | %s | %s |" % (
                    n, fmt(stats([x["restore_start_ms_mean"] for x in v]), "", 2),
                    fmt(stats([x["first_insn_ms_mean"] for x in v]), "", 2),
                    fmt(stats([x["private_kb_per_clone"] for x in v]))))
        L.append("")
    if CTX.notes:
        L.append("## Notes\n")
        for n in CTX.notes:
            L.append("- " + n)
        L.append("")
    if CTX.failures:
        L.append("## FAILURES\n")
        for f in CTX.failures:
            L.append("- " + f.replace("\n", " "))
        L.append("")
    L.append("Plots: migration_throughput.png, memcheck_progress.png, snapshot_throughput.png.\n")
    return "\n".join(L)


def make_plots(out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        CTX.notes.append("no plots: %s" % e)
        return
    R = CTX.results
    mig = R.get("migrate", {})
    phys = R.get("physical", {})
    contents = ["random", "text", "halfzero", "none"]
    series = [("libvmm 1 conn raw", "libvmm_raw1", "total_ms", "#1f77b4"),
              ("libvmm 2 conns raw", "libvmm_raw2", "total_ms", "#4a9fe0"),
              ("libvmm zstd auto", "libvmm_auto1", "total_ms", "#9cc9f0"),
              ("QEMU plain", "qemu_plain", "wall_ms", "#d62728"),
              ("QEMU multifd 2", "qemu_multifd2", "wall_ms", "#f07f7f"),
              ("QEMU multifd 2 + zstd", "qemu_multifd2_zstd", "wall_ms", "#f5b5b5")]
    if mig:
        fig, ax = plt.subplots(figsize=(11, 5.5))
        width = 0.13
        for i, (label, key, field, color) in enumerate(series):
            meds, lo, hi = [], [], []
            for c in contents:
                v = [2048 * MIB / 1e6 / (x[field] / 1e3) for x in mig.get("%s_%s" % (key, c), [])]
                s = stats(v)
                meds.append(s["median"] if s else 0)
                lo.append(s["median"] - s["min"] if s else 0)
                hi.append(s["max"] - s["median"] if s else 0)
            xs = [j + (i - 2.5) * width for j in range(len(contents))]
            ax.bar(xs, meds, width, label=label, color=color, yerr=[lo, hi], capsize=2)
        ip = stats([x["mb_s"] for x in phys.get("iperf3_mb_s", [])])
        ft = stats([x["gb_s"] * 1000 for x in phys.get("first_touch_memfd_gb_s", [])])  # libvmm RAM
        if ip:
            ax.axhline(ip["median"], color="k", ls="--", lw=1, label="iperf3 1 stream (%.0f MB/s)" % ip["median"])
        if ft:
            ax.axhline(ft["median"], color="g", ls=":", lw=1.5,
                       label="first touch, memfd = libvmm RAM (%.0f MB/s)" % ft["median"])
        ftq = stats([x["gb_s"] * 1000 for x in phys.get("first_touch_anon_thp_gb_s", [])])
        if ftq:
            ax.axhline(ftq["median"], color="m", ls="-.", lw=1,
                       label="first touch, anon + THP = QEMU RAM (%.0f MB/s)" % ftq["median"])
        ax.set_xticks(range(len(contents)))
        ax.set_xticklabels(["random", "text", "half zero", "never touched"])
        ax.set_ylabel("MB/s (2 GiB VM RAM / wall time)")
        ax.set_yscale("log")
        ax.set_title("Live migration over loopback, 2 GiB VM: effective throughput by memory content\n"
                     "(median of %d, bars min–max)" % CTX.runs)
        ax.legend(fontsize=8, ncol=2)
        ax.grid(axis="y", alpha=0.3, which="both")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "migration_throughput.png"), dpi=110)
        plt.close(fig)
    snap = R.get("snapshot", {})
    if snap:
        fig, ax = plt.subplots(figsize=(9, 5))
        sc = ["random", "text", "halfzero"]
        ser = [("libvmm save", "libvmm_save", "mb_s", "#1f77b4"),
               ("libvmm save zstd", "libvmm_save_compressed", "mb_s", "#9cc9f0"),
               ("QEMU stop+migrate exec:cat", "qemu_save", "mb_s", "#d62728"),
               ("virsh save", "libvirt", "save_mb_s", "#ff9f40")]
        width = 0.2
        for i, (label, key, field, color) in enumerate(ser):
            meds, lo, hi = [], [], []
            for c in sc:
                s = stats([x[field] for x in snap.get("%s_%s" % (key, c), [])])
                meds.append(s["median"] if s else 0)
                lo.append(s["median"] - s["min"] if s else 0)
                hi.append(s["max"] - s["median"] if s else 0)
            ax.bar([j + (i - 1.5) * width for j in range(len(sc))], meds, width, label=label,
                   color=color, yerr=[lo, hi], capsize=2)
        dd = stats([x["mb_s"] for x in phys.get("dd_direct_mb_s", [])])
        if dd:
            ax.axhline(dd["median"], color="k", ls="--", lw=1, label="dd oflag=direct (%.0f MB/s)" % dd["median"])
        ax.set_xticks(range(len(sc)))
        ax.set_xticklabels(sc)
        ax.set_ylabel("MB/s (2 GiB VM RAM / save time)")
        ax.set_title("Snapshot save throughput, 2 GiB VM (median, bars min–max)")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "snapshot_throughput.png"), dpi=110)
        plt.close(fig)
    mc = R.get("memcheck", {})
    if mc.get("libvmm") and mc.get("qemu"):
        def pick(runs, key):
            s = sorted(runs, key=lambda x: x[key])
            return s[len(s) // 2]
        lr = pick(mc["libvmm"], "total_ms")
        qr = pick(mc["qemu"], "wall_ms")
        fig, axs = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
        # libvmm: one point per round (at its end)
        # libvmm reports per round: the rate held over the round, what is left at its end.
        rd = lr["rounds_detail"]
        t = [r["t_ms"] / 1e3 for r in rd]
        t0s = [(r["t_ms"] - r["duration_ms"]) / 1e3 for r in rd]
        axs[0].plot([0] + t, [rd[0]["pages"] * 4096 / 1e6] + [r["remaining_bytes"] / 1e6 for r in rd],
                    "o--", color="#1f77b4",
                    label="libvmm: round 0's pages at t=0, then dirty at the end of each round")
        for k, key in ((1, "dirty_rate_mbps"), (2, "bandwidth_mbps")):
            axs[k].hlines([r[key] for r in rd], t0s, t, colors="#1f77b4", lw=2.5,
                          label="libvmm: per round (%s)" % ", ".join(
                              "r%d%s" % (r["round"], "*" if r["final"] else "") for r in rd))
            axs[k].plot(t, [r[key] for r in rd], "o", color="#1f77b4")
        smp = [s for s in qr["samples"] if s.get("ram")]
        if smp:
            tq = [s["t_ms"] / 1e3 for s in smp]
            ps = [s["ram"].get("page-size", 4096) for s in smp]
            axs[0].plot(tq, [s["ram"]["remaining"] / 1e6 for s in smp], ".-", color="#d62728",
                        label="QEMU: ram.remaining (query-migrate every 20 ms)")
            axs[1].plot(tq, [s["ram"].get("dirty-pages-rate", 0) * p / 1e6 for s, p in zip(smp, ps)],
                        ".-", color="#d62728", label="QEMU (dirty-pages-rate, updated at each sync)")
            axs[2].plot(tq, [s["ram"].get("mbps", 0) / 8 for s in smp], ".-", color="#d62728", label="QEMU")
        axs[0].set_ylabel("MB remaining")
        axs[1].set_ylabel("dirty rate, MB/s")
        axs[2].set_ylabel("bandwidth, MB/s")
        axs[2].set_xlabel("seconds since migration start (* = final round, guest paused)")
        axs[0].set_title("memcheck (512 MiB rewritten at ~100 MB/s) in a 1 GiB VM: migration progress\n"
                         "libvmm %.0f ms, %d rounds, downtime %.1f ms | QEMU %.0f ms, %s syncs, downtime %s ms (median runs)" % (
                             lr["total_ms"], lr["rounds"], lr["downtime_ms"], qr["wall_ms"], qr["rounds"], qr["downtime_ms"]))
        for a in axs:
            a.grid(alpha=0.3)
            a.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "memcheck_progress.png"), dpi=110)
        plt.close(fig)


# --------------------------------------------------------------------------- main

def main():
    global CTX
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="CMake build tree the binaries come from")
    ap.add_argument("--out", required=True)
    ap.add_argument("--vmm-bench", required=True)
    ap.add_argument("--guests", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="physical,small,snapshot,lazy,clone,migrate,memcheck")
    ap.add_argument("--contents", default="random,text,halfzero")
    ap.add_argument("--migrate-contents", default="random,text,halfzero,none")
    ap.add_argument("--lazy-sizes", default="256,2048,8192")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild report.md and the plots from <out>/report.json")
    args = ap.parse_args()
    CTX = Ctx(args)
    if args.report_only:
        with open(os.path.join(CTX.out, "report.json")) as f:
            CTX.results = json.load(f)
        lv = Libvirt()
        lv.ok = CTX.results.get("libvirt", {}).get("ok", False)
        lv.reason = CTX.results.get("libvirt", {}).get("reason", "")
        lv.version = CTX.results.get("libvirt", {}).get("version", "")
        CTX.failures = CTX.results.get("failures", [])
        CTX.notes = CTX.results.get("notes", [])
        CTX.t_start = time.time() - CTX.results.get("total_seconds", 0)
        make_plots(CTX.out)
        with open(os.path.join(CTX.out, "report.md"), "w") as f:
            f.write(build_report(CTX.results["meta"], lv))
        shutil.rmtree(CTX.tmp, ignore_errors=True)
        return 0
    atexit.register(cleanup_all)

    def on_signal(sig, frame):
        CTX.failures.append("interrupted by signal %d: the report is partial" % sig)
        raise SystemExit("signal %d" % sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    only = set(args.only.split(","))
    info = machine_info()
    CTX.results["meta"] = info
    lv = Libvirt()
    lazy_files = {}
    status = 0
    phases = [
        ("physical", phase_physical),
        ("small", phase_small),
        ("snapshot", lambda: (lv.start() if True else None, phase_snapshot(args.contents.split(","), lv))),
        ("lazy", lambda: lazy_files.update(phase_lazy([int(x) for x in args.lazy_sizes.split(",")]))),
        ("clone", lambda: phase_clone(lazy_files[min(lazy_files)]) if lazy_files else None),
        ("migrate", lambda: phase_migrate(args.migrate_contents.split(","))),
        ("memcheck", phase_memcheck),
    ]
    try:
        for name, fn in phases:
            if name not in only:
                continue
            t0 = time.time()
            CTX.add("load", name, {"when": "start", "loadavg": os.getloadavg()})
            try:
                fn()
            except (BenchError, subprocess.SubprocessError, OSError, ValueError, KeyError) as e:
                CTX.failures.append("%s: %s" % (name, e))
                log("FAILED in %s: %s" % (name, e))
                traceback.print_exc()
                status = 1
            CTX.add("load", name, {"when": "end", "loadavg": os.getloadavg()})
            CTX.results.setdefault("phase_seconds", {})[name] = round(time.time() - t0, 1)
            log("%s done in %.0f s" % (name, time.time() - t0))
    finally:
        for f in lazy_files.values():
            rm(f)
        lv.stop()
        cleanup_all()
        CTX.results["libvirt"] = {"ok": lv.ok, "reason": lv.reason,
                                  "version": getattr(lv, "version", "")}
        CTX.results["notes"] = CTX.notes
        CTX.results["failures"] = CTX.failures
        CTX.results["total_seconds"] = round(time.time() - CTX.t_start, 1)
        with open(os.path.join(CTX.out, "report.json"), "w") as f:
            json.dump(CTX.results, f, indent=1)
        try:
            make_plots(CTX.out)
        except Exception as e:
            CTX.notes.append("plotting failed: %s" % e)
            traceback.print_exc()
        md = build_report(info, lv)
        with open(os.path.join(CTX.out, "report.md"), "w") as f:
            f.write(md)
        shutil.rmtree(CTX.tmp, ignore_errors=True)
        log("wrote %s/report.md, report.json and plots" % CTX.out)
    return status


if __name__ == "__main__":
    sys.exit(main())
