"""Argument parsing and the order of the phases."""
from .plumbing import *  # noqa: F401,F403 (stdlib modules, constants, helpers)
from . import plumbing
from .peers import *  # noqa: F401,F403
from .phases import *  # noqa: F401,F403
from .report import build_report
from .plots import make_plots

# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="CMake build tree the binaries come from")
    ap.add_argument("--out", required=True)
    ap.add_argument("--vmm-bench", required=True)
    ap.add_argument("--guests", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default="physical,small,snapshot,lazy,clone,migrate,memcheck,tls")
    ap.add_argument("--contents", default="random,text,halfzero")
    ap.add_argument("--migrate-contents", default="random,text,halfzero,none")
    ap.add_argument("--lazy-sizes", default="256,2048,8192")
    ap.add_argument("--tls-mib", type=int, default=2048, help="memory moved per TLS row (issue 12: 2 GiB)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild report.md and the plots from <out>/report.json")
    args = ap.parse_args()
    plumbing.CTX = Ctx(args)
    if args.report_only:
        with open(os.path.join(plumbing.CTX.out, "report.json")) as f:
            plumbing.CTX.results = json.load(f)
        lv = Libvirt()
        lv.ok = plumbing.CTX.results.get("libvirt", {}).get("ok", False)
        lv.reason = plumbing.CTX.results.get("libvirt", {}).get("reason", "")
        lv.version = plumbing.CTX.results.get("libvirt", {}).get("version", "")
        plumbing.CTX.failures = plumbing.CTX.results.get("failures", [])
        plumbing.CTX.notes = plumbing.CTX.results.get("notes", [])
        plumbing.CTX.t_start = time.time() - plumbing.CTX.results.get("total_seconds", 0)
        make_plots(plumbing.CTX.out)
        with open(os.path.join(plumbing.CTX.out, "report.md"), "w") as f:
            f.write(build_report(plumbing.CTX.results["meta"], lv))
        shutil.rmtree(plumbing.CTX.tmp, ignore_errors=True)
        return 0
    atexit.register(cleanup_all)

    def on_signal(sig, frame):
        plumbing.CTX.failures.append("interrupted by signal %d: the report is partial" % sig)
        raise SystemExit("signal %d" % sig)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    only = set(args.only.split(","))
    info = machine_info()
    plumbing.CTX.results["meta"] = info
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
        ("tls", lambda: phase_tls(args.tls_mib)),
    ]
    try:
        for name, fn in phases:
            if name not in only:
                continue
            t0 = time.time()
            plumbing.CTX.add("load", name, {"when": "start", "loadavg": os.getloadavg()})
            try:
                fn()
            except (BenchError, subprocess.SubprocessError, OSError, ValueError, KeyError) as e:
                plumbing.CTX.failures.append("%s: %s" % (name, e))
                log("FAILED in %s: %s" % (name, e))
                traceback.print_exc()
                status = 1
            plumbing.CTX.add("load", name, {"when": "end", "loadavg": os.getloadavg()})
            plumbing.CTX.results.setdefault("phase_seconds", {})[name] = round(time.time() - t0, 1)
            log("%s done in %.0f s" % (name, time.time() - t0))
    finally:
        for f in lazy_files.values():
            rm(f)
        lv.stop()
        cleanup_all()
        plumbing.CTX.results["libvirt"] = {"ok": lv.ok, "reason": lv.reason,
                                  "version": getattr(lv, "version", "")}
        plumbing.CTX.results["notes"] = plumbing.CTX.notes
        plumbing.CTX.results["failures"] = plumbing.CTX.failures
        plumbing.CTX.results["total_seconds"] = round(time.time() - plumbing.CTX.t_start, 1)
        with open(os.path.join(plumbing.CTX.out, "report.json"), "w") as f:
            json.dump(plumbing.CTX.results, f, indent=1)
        try:
            make_plots(plumbing.CTX.out)
        except Exception as e:
            plumbing.CTX.notes.append("plotting failed: %s" % e)
            traceback.print_exc()
        md = build_report(info, lv)
        with open(os.path.join(plumbing.CTX.out, "report.md"), "w") as f:
            f.write(md)
        shutil.rmtree(plumbing.CTX.tmp, ignore_errors=True)
        log("wrote %s/report.md, report.json and plots" % plumbing.CTX.out)
    return status
