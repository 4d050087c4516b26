#!/usr/bin/python3
"""libvmm benchmarks against the physical limits and QEMU 7.2, measured in one run.

Called by tests/bench/run.sh (make bench). Figures only: a benchmark fails when a run fails
(a tool errors, a guest does not verify), never on time. Every figure is the median of at
least three runs with min-max; libvmm and QEMU runs alternate (the machine is shared).

Writes <out>/report.md, <out>/report.json (every raw run) and PNG plots in <out>;
scratch files live in <out>/tmp and are deleted; process logs stay in <out>/logs.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vmmbench.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
