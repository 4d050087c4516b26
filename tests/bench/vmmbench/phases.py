"""The measurements: physical limits, snapshots, lazy restore, clones, migration."""
from .plumbing import *  # noqa: F401,F403 (stdlib modules, constants, helpers)
from . import plumbing
from .peers import *  # noqa: F401,F403
from .peers_qemu_tls import make_qemu_certs, qemu_tls_migrate

# --------------------------------------------------------------------------- phases

def phase_physical():
    """dd oflag=direct, iperf3 single stream, memcpy and first touch; runs interleaved."""
    log("physical limits: dd, iperf3, memcpy, first touch")
    for r in range(plumbing.CTX.runs):
        path = os.path.join(plumbing.CTX.tmp, "dd.img")
        rc, out, err = run(["dd", "if=/dev/zero", "of=" + path, "bs=1M", "count=2048",
                            "oflag=direct"], 300)
        if rc != 0:
            rm(path)
            raise BenchError("dd: " + err)
        m = re.search(r"(\d+) bytes.*copied, ([\d.]+) s", err)
        plumbing.CTX.add("physical", "dd_direct_mb_s", {"run": r, "bytes": int(m.group(1)),
                                               "s": float(m.group(2)),
                                               "mb_s": int(m.group(1)) / 1e6 / float(m.group(2))})
        # and read back around the page cache (what a restore could get from the disk)
        rc, out, err = run(["dd", "if=" + path, "of=/dev/null", "bs=1M", "iflag=direct"], 300)
        rm(path)
        if rc != 0:
            raise BenchError("dd: " + err)
        m = re.search(r"(\d+) bytes.*copied, ([\d.]+) s", err)
        plumbing.CTX.add("physical", "dd_read_direct_mb_s", {"run": r, "bytes": int(m.group(1)),
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
        plumbing.CTX.add("physical", "iperf3_mb_s", {"run": r, "mb_s": bps / 8 / 1e6})
        evs, _ = vmm_oneshot(["membw", "--size", "2048", "--runs", "1"], "membw", "first_touch", 120)
        memcpy_ev = [e for e in _.events if e.get("event") == "memcpy"]
        for e in memcpy_ev:
            plumbing.CTX.add("physical", "memcpy_gb_s", {"run": r, "gb_s": e["gb_s"]})
        for e in evs:
            plumbing.CTX.add("physical", "first_touch_%s_gb_s" % e["kind"], {"run": r, "gb_s": e["gb_s"]})


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
    q = Qemu("qemu-restore", mem_mib, plumbing.CTX.fill, append, incoming="exec:cat " + path)
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
        lfile = os.path.join(plumbing.CTX.tmp, "libvmm-%s.snap" % content)
        qfile = os.path.join(plumbing.CTX.tmp, "qemu-%s.mig" % content)
        vfile = os.path.join(plumbing.CTX.tmp, "libvirt-%s.sav" % content)
        cfile = os.path.join(plumbing.CTX.tmp, "libvmm-%s.zsnap" % content)
        vs = VmmProc(["save", "--mem", str(mem), "--pattern", content, "--stdin"], "save-" + content)
        q = Qemu("qemu-fill-" + content, mem, plumbing.CTX.fill, fill_append(mem, content))
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
            plumbing.CTX.add("snapshot", "fill_ms_libvmm_" + content, booted["fill_ms"])
            vs.expect("ready", 30)
            q.wait_serial("fill done", 600)
            if dom:
                dom.wait_serial("fill done", 600)
            # Idle fill guests busy-poll: only the VM being measured may run.
            vs.cmd("pause", "paused", 30)
            q.stop()
            if dom:
                lv.virsh("suspend", dom.name)
            for r in range(plumbing.CTX.runs):
                last = r == plumbing.CTX.runs - 1
                # libvmm save, eager restore
                vs.cmd("resume", "resumed", 30)
                s = vs.cmd("save " + lfile, "save", 300)
                vs.cmd("pause", "paused", 30)
                s["content"] = content
                plumbing.CTX.add("snapshot", "libvmm_save_" + content, s)
                res = libvmm_restore(lfile, "eager", "full" if last else "sampled", "eager")
                res["content"] = content
                plumbing.CTX.add("snapshot", "libvmm_restore_eager_" + content, res)
                log("  libvmm save %.0f ms (%.0f MB/s), eager restore %.0f ms" %
                    (s["ms"], s["mb_s"], res["restore_ms"]))
                if not (content == "random" and last):
                    rm(lfile)
                # QEMU save, restore
                qs = qemu_save(q, qfile)
                qs["mb_s"] = mem * MIB / 1e6 / (qs["ms"] / 1e3)
                plumbing.CTX.add("snapshot", "qemu_save_" + content, qs)
                qr = qemu_restore(qfile, mem, fill_append(mem, content), verify=last)
                qr["mb_s"] = mem * MIB / 1e6 / (qr["restore_ms"] / 1e3)
                plumbing.CTX.add("snapshot", "qemu_restore_" + content, qr)
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
                        plumbing.CTX.add("snapshot", "libvirt_" + content, ent)
                        log("  libvirt save %.0f ms, restore %.0f ms" % (ent["save_ms"], ent["restore_ms"]))
                    except BenchError as e:
                        lv.ok = False
                        lv.reason = "virsh save/restore failed: %s" % e
                        log("libvirt: " + lv.reason)
                # libvmm compressed
                vs.cmd("resume", "resumed", 30)
                c = vs.cmd("save %s compress" % cfile, "save", 600)
                vs.cmd("pause", "paused", 30)
                plumbing.CTX.add("snapshot", "libvmm_save_compressed_" + content, c)
                rm(cfile)
            if content == "random":
                for r in range(plumbing.CTX.runs):
                    vs.cmd("resume", "resumed", 30)
                    s = vs.cmd("save %s.live live" % lfile, "save", 300)
                    vs.cmd("pause", "paused", 30)
                    plumbing.CTX.add("snapshot", "libvmm_save_live_random", s)
                    rm(lfile + ".live")
                    qs = qemu_save(q, qfile, live=True)
                    plumbing.CTX.add("snapshot", "qemu_save_live_random", qs)
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
            path = os.path.join(plumbing.CTX.tmp, "lazy-%d.snap" % mem)
            if mem == 2048 and os.path.exists(os.path.join(plumbing.CTX.tmp, "libvmm-random.snap")):
                os.rename(os.path.join(plumbing.CTX.tmp, "libvmm-random.snap"), path)
            else:
                fill = fill_mib(mem) if mem <= 4096 else 4096
                log("lazy restore: making a %d MiB snapshot (%d MiB random)" % (mem, fill))
                evs, _ = vmm_oneshot(["save", "--mem", str(mem), "--fill", str(fill), "--pattern",
                                      "random", "--file", path], "lazysave-%d" % mem, "save", 900)
            files[mem] = path
        for r in range(plumbing.CTX.runs):
            for mem in sizes:
                res = libvmm_restore(files[mem], "lazy", "sampled" if r == plumbing.CTX.runs - 1 else "none",
                                     "lazy-%d" % mem)
                res["mem_mib"] = mem
                plumbing.CTX.add("lazy", "lazy_%d" % mem, res)
                # again with the file still in the page cache (a hot snapshot, as for clones)
                w = libvmm_restore(files[mem], "lazy", "none", "lazywarm-%d" % mem, cold=False)
                w["mem_mib"] = mem
                plumbing.CTX.add("lazy_warm", "lazy_%d" % mem, w)
                log("  lazy %d MiB: restore %.2f ms, first instruction %.2f ms (cold), %.2f ms (warm)" %
                    (mem, res["restore_ms"], res["first_insn_ms"], w["first_insn_ms"]))
        return files
    except Exception:
        for f in files.values():
            rm(f)
        raise


def phase_clone(path):
    for r in range(plumbing.CTX.runs):
        for n in (1, 10, 100):
            evs, _ = vmm_oneshot(["clone", "--file", path, "--n", str(n)], "clone-%d" % n, "clone", 600)
            plumbing.CTX.add("clone", "clone_%d" % n, evs[0])
            log("  %d clones: %.2f ms per clone to running, %.2f ms to first instruction, %.0f kB private each" %
                (n, evs[0]["restore_start_ms_mean"], evs[0]["first_insn_ms_mean"],
                 evs[0]["private_kb_per_clone"]))


def phase_small():
    log("VM creation to first instruction, pause/resume")
    for mem in (256, 2048):
        evs, _ = vmm_oneshot(["create-first-insn", "--mem", str(mem), "--runs", str(max(5, plumbing.CTX.runs))],
                             "create-%d" % mem, "create_first_insn", 120)
        for e in evs:
            plumbing.CTX.add("small", "create_first_insn_%d" % mem, e)
    for r in range(plumbing.CTX.runs):
        evs, _ = vmm_oneshot(["pause-resume", "--n", "200"], "pause-resume", "pause_resume", 120)
        plumbing.CTX.add("small", "pause_resume", evs[0])


LIBVMM_MODES = [("raw1", 1, "off"), ("raw2", 2, "off"), ("auto1", 1, "auto")]
QEMU_MODES = [("plain", {}), ("multifd2", {"multifd-channels": 2}),
              ("multifd2_zstd", {"multifd-channels": 2, "multifd-compression": "zstd"})]


def qemu_migrate_hop(src, mem, append, mode_params, samples=None, verify=False):
    """src -> a new QEMU on this host; returns (result, destination)."""
    port = free_port()
    dst = Qemu("qemu-dst", mem, plumbing.CTX.fill, append, incoming="defer")
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
        q = Qemu("qemu-msrc-" + content, mem, plumbing.CTX.fill, fill_append(mem, content))
        cur = src
        try:
            src.expect("booted", 600)
            src.expect("ready", 30)
            q.wait_serial("fill done", 600)
            # Idle fill guests busy-poll: only the VM being migrated runs.
            q.stop()
            cur.cmd("pause", "paused", 30)
            hops = [(r, lm, qm) for r in range(plumbing.CTX.runs) for lm, qm in zip(LIBVMM_MODES, QEMU_MODES)]
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
                plumbing.CTX.add("migrate", "libvmm_%s_%s" % (lname, content), s)
                # QEMU, same guest and contents
                q.cont()
                qr, qd = qemu_migrate_hop(q, mem, fill_append(mem, content), qparams, verify=last)
                q.remove()
                q = qd
                q.stop()
                qr["content"] = content
                plumbing.CTX.add("migrate", "qemu_%s_%s" % (qname, content), qr)
                log("  run %d: libvmm %s %.0f ms (%.0f MB/s, %d rounds) | QEMU %s %.0f ms (%.0f MB/s)" %
                    (r, lname, s["total_ms"], s["mb_s"], s["rounds"], qname, qr["wall_ms"], qr["mb_s"]))
            cur.cmd("resume", "resumed", 30)
            v = cur.cmd("verify full", "verify", 300)
            plumbing.CTX.add("migrate", "libvmm_verify_" + content, v)
        finally:
            cur.finish()
            q.remove()


def phase_memcheck():
    mem = 1024
    cmdline = "mem=512 rate=100 gens=2"
    log("memcheck: %d MiB VM, %s, default downtime limits" % (mem, cmdline))
    for r in range(plumbing.CTX.runs):
        # libvmm
        dst = VmmProc(["migrate-recv", "--port", "0", "--guest", "memcheck", "--wait-exit", "120"],
                      "memcheck-dst")
        try:
            port = dst.expect("listening", 30)["port"]
            src_args = ["migrate-send", "--port", str(port), "--mem", str(mem), "--guest",
                        plumbing.CTX.memcheck, "--cmdline", cmdline, "--wait-line", "memcheck gen 1 ok"]
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
        plumbing.CTX.add("memcheck", "libvmm", s)
        # QEMU
        q = Qemu("qemu-memcheck-src", mem, plumbing.CTX.memcheck, cmdline)
        try:
            q.wait_serial("memcheck gen 1 ok", 120)
            samples = []
            dst_q = None
            port = free_port()
            dst_q = Qemu("qemu-memcheck-dst", mem, plumbing.CTX.memcheck, cmdline, incoming="defer")
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
        plumbing.CTX.add("memcheck", "qemu", qr)
        log("  run %d: libvmm %.0f ms, %d rounds, downtime %.1f ms | QEMU %.0f ms, %s syncs, downtime %s ms" %
            (r, s["total_ms"], s["rounds"], s["downtime_ms"], qr["wall_ms"], qr["rounds"], qr["downtime_ms"]))


def phase_tls(mem_mib=2048):
    """TLS on the migration stream: off, on over 1 connection, on over several, with
    certificates and with a PSK, on the fake kernel (tls_bench: the memory-only path, no
    guest runs, so it needs no KVM); QEMU's own migration of the same content, plain and
    with tls-creds-x509 (one stream, multifd 2 and 4), a paused TCG guest (peers_qemu_tls);
    and the physical limit, `openssl speed -evp aes-128-gcm` at 16 KiB records per core
    times the cores. libvmm and QEMU rows alternate within each run."""
    log("tls: off / on 1 connection / on several, libvmm and QEMU, and openssl speed")
    exe = os.path.join(plumbing.CTX.build, "tests", "bench", "tls_bench")
    cases = [("off", 1), ("off", 2), ("cert", 1), ("psk", 1), ("cert", 2), ("cert", 4)]
    qcases = [(False, 0), (False, 2), (True, 0), (True, 2), (True, 4)]
    certs = make_qemu_certs(os.path.join(plumbing.CTX.tmp, "qemu-tls-certs"))
    fill = os.path.join(plumbing.CTX.tmp, "tls-fill.bin")
    try:
        for r in range(plumbing.CTX.runs):
            for pattern in ("random", "text"):
                rc, out, err = run([exe, "--mem", str(mem_mib), "--pattern", pattern,
                                    "--dump", fill], 300)
                if rc != 0:
                    raise BenchError("tls_bench --dump: " + (err or out)[-300:])
                for i in range(max(len(cases), len(qcases))):
                    if i < len(cases):
                        mode, conns = cases[i]
                        rc, out, err = run([exe, "--mem", str(mem_mib), "--pattern", pattern,
                                            "--tls", mode, "--conns", str(conns)], 300)
                        if rc != 0:
                            raise BenchError("tls_bench: " + (err or out)[-300:])
                        e = json.loads(out.strip().splitlines()[-1])
                        e["run"] = r
                        plumbing.CTX.add("tls", "%s_%s_%d" % (pattern, mode, conns), e)
                    if i < len(qcases):
                        tls, channels = qcases[i]
                        e = qemu_tls_migrate(fill, mem_mib, tls, channels, certs)
                        e["run"], e["pattern"] = r, pattern
                        log("tls: QEMU %s %s %s: %s MB/s" % (pattern, e["tls"],
                            "multifd %d" % channels if channels else "1 stream", e["mbps"]))
                        plumbing.CTX.add("tls_qemu", "%s_%s_%s" % (
                            pattern, e["tls"], "multifd%d" % channels if channels else "1"), e)
                rm(fill)
            rc, out, err = run(["openssl", "speed", "-evp", "aes-128-gcm", "-seconds", "2"], 120)
            m = re.search(r"AES-128-GCM(?:\s+[\d.]+k){5}\s+([\d.]+)k", out)
            if rc == 0 and m:
                per_core = float(m.group(1)) * 1000 / 1e6
                plumbing.CTX.add("tls", "aes128gcm_mb_s_per_core", {"run": r, "mb_s": per_core,
                                                                     "cores": os.cpu_count()})
    finally:
        rm(fill)
        shutil.rmtree(certs, ignore_errors=True)
    ktls = os.path.exists("/proc/sys/net/ipv4/tcp_available_ulp") and \
        "tls" in open("/proc/sys/net/ipv4/tcp_available_ulp").read().split()
    plumbing.CTX.results.setdefault("tls", {})["ktls_available"] = ktls
