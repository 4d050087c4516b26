"""The PNG plots (matplotlib)."""
from .plumbing import *  # noqa: F401,F403 (stdlib modules, constants, helpers)
from . import plumbing

def make_plots(out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        plumbing.CTX.notes.append("no plots: %s" % e)
        return
    R = plumbing.CTX.results
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
                     "(median of %d, bars min–max)" % plumbing.CTX.runs)
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
