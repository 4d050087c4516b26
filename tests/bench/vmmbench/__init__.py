"""libvmm benchmarks (make bench): bench.py is the entry; see its docstring."""
