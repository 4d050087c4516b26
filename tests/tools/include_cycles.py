#!/usr/bin/env python3
"""Fails if the modules of a source directory (libvmm/ by default) include each other in a
cycle. A module is x.c plus x.h (vm_internal.h belongs to vm); module X depends on module Y
when a file of X includes a header of Y. Headers from elsewhere (system, public, generated)
are not modules. Prints every cycle's modules and the edges between them.

Usage: tests/tools/include_cycles.py [DIR]   (exit 0: no cycle, 1: cycles)"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
ALIASES = {"vm_internal": "vm"}


def module_of(path, root):
    rel = os.path.relpath(path, root)
    name = os.path.splitext(rel)[0]
    return ALIASES.get(name, name)


def graph(root):
    files = []
    for d, _, names in os.walk(root):
        files += [os.path.join(d, n) for n in names if n.endswith((".c", ".h"))]
    edges = {}
    for f in files:
        src = module_of(f, root)
        edges.setdefault(src, {})
        with open(f, encoding="utf-8", errors="replace") as fh:
            for inc in INCLUDE.findall(fh.read()):
                for base in (os.path.dirname(f), root):
                    target = os.path.normpath(os.path.join(base, inc))
                    if os.path.isfile(target) and target.startswith(root + os.sep):
                        dst = module_of(target, root)
                        if dst != src:
                            edges[src].setdefault(dst, []).append(
                                "%s -> %s" % (os.path.relpath(f, root), inc))
                        break
    return edges


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(here, "..", "..", "libvmm"))
    edges = graph(root)
    found = cycles(edges)
    for comp in found:
        print("include cycle: " + " <-> ".join(comp))
        for a in comp:
            for b in comp:
                for why in edges[a].get(b, []):
                    print("  %s (%s -> %s)" % (why, a, b))
    if not found:
        print("no include cycle among %d modules of %s" % (len(edges), root))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
