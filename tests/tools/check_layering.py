#!/usr/bin/env python3
"""Fails when a part of the library reaches where it must not.

The rules (issue 9, "the build keeps the parts apart"):
  1. No include cycle between the modules of libvmm/ (module = x.c + x.h; vm_internal.h
     belongs to module vm; devices/ files are modules of their own).
  2. The core (libvmm/) includes nothing from migrate/, nor the stream schema.
  3. migrate/ does not include libvmm/vm_internal.h: it moves a VM through vm_move.h.
  4. Public headers (include/vmm/) include only system headers and each other.
  5. Internal includes are path-qualified ("libvmm/memory.h", "migrate/stream.h"), so a
     flat name cannot hide which part a file reaches into.

Usage: check_layering.py [SOURCE_DIR]. Prints every violation, exits 1 if any.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)
GENERATED = {'state.pb-c.h': 'libvmm', 'devices.pb-c.h': 'libvmm', 'stream.pb-c.h': 'migrate'}


def sources(root, part):
    for dirpath, _, names in os.walk(os.path.join(root, part)):
        for n in sorted(names):
            if n.endswith(('.c', '.h')):
                yield os.path.relpath(os.path.join(dirpath, n), root)


def includes(root, path):
    with open(os.path.join(root, path), encoding='utf-8') as f:
        return [(kind, name) for kind, name in INCLUDE.findall(f.read())]


def resolve(root, path, name):
    """Where a flat include lands: beside the file, then in each part (the old -I order)."""
    for d in (os.path.dirname(path), 'libvmm', 'migrate'):
        cand = os.path.normpath(os.path.join(d, name))
        if os.path.exists(os.path.join(root, cand)):
            return cand
    return None


def module(path):
    """libvmm/vm_internal.h -> libvmm/vm; libvmm/devices/serial.c -> libvmm/devices/serial."""
    base = os.path.splitext(path)[0]
    return 'libvmm/vm' if base == 'libvmm/vm_internal' else base


def find_cycle(graph):
    """Returns one cycle as a list of modules, or None (iterative DFS, three colours)."""
    colour = {m: 0 for m in graph}
    for start in sorted(graph):
        if colour[start]:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        colour[start] = 1
        path = [start]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
    return None


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), '..', '..'))
    errors = []
    graph = {}
    for part in ('libvmm', 'migrate'):
        for path in sources(root, part):
            me = module(path)
            graph.setdefault(me, set()) if part == 'libvmm' else None
            for kind, name in includes(root, path):
                if kind == '<':
                    continue
                if name in GENERATED:
                    if GENERATED[name] != part and part == 'libvmm':
                        errors.append(f'{path}: the core includes the stream schema {name}')
                    continue
                if name.startswith('vmm/'):
                    continue
                if not name.startswith(('libvmm/', 'migrate/')):
                    errors.append(f'{path}: "{name}" is not path-qualified')
                    name = resolve(root, path, name)
                    if name is None:
                        continue
                if part == 'libvmm' and name.startswith('migrate/'):
                    errors.append(f'{path}: the core includes {name}')
                if part == 'migrate' and name == 'libvmm/vm_internal.h':
                    errors.append(f'{path}: migrate/ includes {name} (use libvmm/vm_move.h)')
                if part == 'libvmm' and name.startswith('libvmm/'):
                    other = module(name)
                    if other != me:
                        graph[me].add(other)
    for path in sources(root, 'include'):
        for kind, name in includes(root, path):
            if not name.startswith('vmm/') and kind == '"':
                errors.append(f'{path}: a public header includes "{name}"')
    for m in graph:
        graph[m] &= set(graph)
    cycle = find_cycle(graph)
    if cycle:
        errors.append('include cycle in libvmm/: ' + ' -> '.join(cycle))
    for e in errors:
        print(e)
    if not errors:
        print(f'layering ok: {len(graph)} core modules, no cycle')
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
