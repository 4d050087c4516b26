"""Shared state (the run context CTX), logging, child processes, files and statistics."""
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
