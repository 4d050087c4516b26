"""The programs measured: vmm_bench (libvmm), QEMU over QMP, QEMU through libvirt."""
from .plumbing import *  # noqa: F401,F403 (stdlib modules, constants, helpers)
from . import plumbing

# --------------------------------------------------------------------------- vmm_bench

class VmmProc:
    """One vmm_bench process: JSON lines on stdout, commands on stdin."""

    def __init__(self, args, name):
        self.name = name
        self.logfile = plumbing.CTX.logpath(name)
        self.err = open(self.logfile, "w")
        self.p = track(subprocess.Popen([plumbing.CTX.bench] + args, stdin=subprocess.PIPE,
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


def quit_qemu(q):
    """Ends a QEMU peer (its process q.p, QMP q.qmp, stderr file q.err, socket q.sock):
    a polite quit, then a kill if it has not gone in 10 s."""
    try:
        q.qmp.cmd("quit")
    except Exception:
        pass
    try:
        q.p.wait(10)
    except subprocess.TimeoutExpired:
        kill_proc(q.p)
    q.qmp.close()
    q.err.close()
    rm(q.sock)


class SerialFile:
    """A peer whose guest serial port goes to the file self.serial."""
    FAILURES = ("EXCEPTION", "CORRUPT", "FAILED", "too big")

    def serial_text(self):
        try:
            with open(self.serial, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def exited(self):
        """A message if the peer's process has ended, else None."""
        return None

    def wait_serial(self, text, timeout, count=1):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.serial_text()
            if any(f in s for f in self.FAILURES):
                raise BenchError("%s: guest failed: %s" % (self.name, s[-300:]))
            if s.count(text) >= count:
                return
            gone = self.exited()
            if gone:
                raise BenchError("%s: %s: %s" % (self.name, gone, s[-300:]))
            time.sleep(0.05)
        raise BenchError("%s: no '%s' on the serial port within %ss" % (self.name, text, timeout))


class Qemu(SerialFile):
    def __init__(self, name, mem_mib, kernel, append, incoming=None):
        self.name = name
        self.serial = os.path.join(plumbing.CTX.tmp, "%s-%d.serial" % (name, time.time_ns()))
        self.sock = os.path.join(plumbing.CTX.tmp, "%s-%d.qmp" % (name, time.time_ns()))
        args = [QEMU, "-enable-kvm", "-cpu", "host,-arch-capabilities", "-machine", "pc",
                "-m", str(mem_mib), "-smp", "1", "-nodefaults", "-no-user-config",
                "-display", "none", "-kernel", kernel, "-append", append,
                "-serial", "file:" + self.serial,
                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                "-qmp", "unix:%s,server=on,wait=off" % self.sock]
        if incoming:
            args += ["-incoming", incoming]
        self.logfile = plumbing.CTX.logpath(name)
        self.err = open(self.logfile, "w")
        self.t_spawn = time.time()
        self.p = track(subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.err,
                                        stderr=self.err))
        self.qmp = Qmp(self.sock)

    def exited(self):
        return None if self.p.poll() is None else "QEMU exited %s" % self.p.returncode

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
        quit_qemu(self)

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
                plumbing.CTX.notes.append("libvirt: appended user/group = \"root\" to %s" % conf)
            alive = False
            if os.path.exists("/run/libvirt/libvirt-sock"):
                rc, _, _ = run(["virsh", "-c", self.uri, "version"], 20)
                alive = rc == 0
            if not alive:
                for daemon, sock in (("virtlogd", "/run/libvirt/virtlogd-sock"),
                                     ("libvirtd", "/run/libvirt/libvirt-sock")):
                    lf = open(plumbing.CTX.logpath(daemon), "w")
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
        path = os.path.join(plumbing.CTX.tmp, name + ".xml")
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


class LibvirtDomain(SerialFile):
    def __init__(self, lv, name, mem_mib, pattern):
        self.lv = lv
        self.name = name
        self.serial = os.path.join(plumbing.CTX.tmp, name + ".serial")
        rm(self.serial)
        lv.remove(name)
        lv.define(name, mem_mib, plumbing.CTX.fill, fill_append(mem_mib, pattern), self.serial)
        lv.virsh("start", name)

    def verify_full(self, timeout=300):
        before = self.serial_text().count("verify ok")
        self.lv.virsh("inject-nmi", self.name)
        self.wait_serial("verify ok", timeout, before + 1)

    def remove(self):
        self.lv.remove(self.name)
        rm(self.serial)
