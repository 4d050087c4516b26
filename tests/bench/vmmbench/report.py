"""report.md and report.json from the measurements."""
from .plumbing import *  # noqa: F401,F403 (stdlib modules, constants, helpers)
from . import plumbing
from .peers import fill_mib
from .phases import LIBVMM_MODES, QEMU_MODES

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
    R = plumbing.CTX.results
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
             "Times are wall-clock. Raw runs: report.json.\n" % (plumbing.CTX.runs, (time.time() - plumbing.CTX.t_start) / 60))

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
    if plumbing.CTX.notes:
        L.append("## Notes\n")
        for n in plumbing.CTX.notes:
            L.append("- " + n)
        L.append("")
    if plumbing.CTX.failures:
        L.append("## FAILURES\n")
        for f in plumbing.CTX.failures:
            L.append("- " + f.replace("\n", " "))
        L.append("")
    L.append("Plots: migration_throughput.png, memcheck_progress.png, snapshot_throughput.png.\n")
    # ---- TLS
    tl = R.get("tls", {})
    tq = R.get("tls_qemu", {})
    if any(k.startswith("random_") for k in tl) or tq:
        L.append("## TLS on the migration stream, libvmm and QEMU side by side\n")
        L.append("libvmm: `tls_bench`, a fake-kernel VM's %s MiB over loopback, source and "
                 "destination in one process, TLS 1.3 AES-128-GCM (OpenSSL), mutual certificates "
                 "(cert) or PSK; kTLS available: %s. QEMU (%s): two `qemu-system-x86_64 -accel tcg "
                 "-S` processes (the guest never runs; a paused guest's migration data path does "
                 "not depend on the accelerator), the same content loaded into RAM at 1 MiB, "
                 "`tls-creds-x509` with verify-peer on both ends, TLS 1.3 AES-128-GCM (GnuTLS "
                 "priority pinned), several connections = multifd channels; MB/s = content bytes "
                 "/ query-migrate total-time; destination RAM checked in 8 sampled 4 MiB chunks. "
                 "Both: median (min-max) of the runs; rows alternate libvmm/QEMU. Physical "
                 "limit: `openssl speed -evp aes-128-gcm` at 16 KiB per core x %s cores.\n" % (
                     next((v[0]["mem_mib"] for k, v in tl.items() if k.startswith("random_")), "?"),
                     tl.get("ktls_available"), info.get("qemu", "?"), os.cpu_count()))
        L.append("| content | TLS | connections | libvmm MB/s | libvmm total ms | QEMU MB/s | "
                 "QEMU total ms | libvmm / QEMU |")
        L.append("|---|---|---|---|---|---|---|---|")
        pairs = [("off", 1, "off_1"), ("off", 2, "off_multifd2"), ("cert", 1, "cert_1"),
                 ("psk", 1, None), ("cert", 2, "cert_multifd2"), ("cert", 4, "cert_multifd4")]
        for pattern in ("random", "text"):
            for mode, conns, qkey in pairs:
                lv_runs = tl.get("%s_%s_%d" % (pattern, mode, conns), [])
                q_runs = tq.get("%s_%s" % (pattern, qkey), []) if qkey else []
                if not lv_runs and not q_runs:
                    continue
                lm = stats([x["mbps"] for x in lv_runs])
                qm = stats([x["mbps"] for x in q_runs])
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    pattern, mode, conns, fmt(lm), fmt(stats([x["total_ms"] for x in lv_runs])),
                    fmt(qm) if qkey else "(no PSK in QEMU)",
                    fmt(stats([x["total_ms"] for x in q_runs])) if qkey else "",
                    ratio(lm and lm["median"], qm and qm["median"]) if qkey else ""))
        sp = tl.get("aes128gcm_mb_s_per_core", [])
        if sp:
            L.append("| limit | AES-128-GCM | x%s cores | %s | | | | |" % (os.cpu_count(),
                     fmt(stats([x["mb_s"] * x["cores"] for x in sp]))))
        L.append("")
    return "\n".join(L)
