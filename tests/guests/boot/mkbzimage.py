#!/usr/bin/env python3
"""Wraps a guest's ELF64 image into a Linux bzImage: boot sector and setup header from
setup.bin (boot/setup.S), then the flat protected-mode payload that loaders put at 1 MiB.
Fills in setup_sects, syssize and init_size. Usage: mkbzimage.py setup.bin guest64.elf out"""
import struct
import sys

LOAD = 0x100000


def payload(elf):
    """Flat image of the PT_LOAD segments from LOAD, and the memory size incl. bss."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        sys.exit("mkbzimage: not an ELF64 file")
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    segs, mem_end = [], LOAD
    for i in range(phnum):
        p_type, _, off, _, paddr, filesz, memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", elf, phoff + i * phentsize)
        if p_type != 1:
            continue
        if paddr < LOAD:
            sys.exit("mkbzimage: segment below 1 MiB")
        segs.append((paddr, elf[off:off + filesz]))
        mem_end = max(mem_end, paddr + memsz)
    file_end = max(p + len(d) for p, d in segs)
    img = bytearray(file_end - LOAD)
    for p, d in segs:
        img[p - LOAD:p - LOAD + len(d)] = d
    return bytes(img), mem_end - LOAD


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    setup = bytearray(open(sys.argv[1], "rb").read())
    body, init_size = payload(open(sys.argv[2], "rb").read())
    if setup[0x1fe:0x200] != b"\x55\xaa" or setup[0x202:0x206] != b"HdrS":
        sys.exit("mkbzimage: setup.bin has no boot protocol header")
    sects = max(1, (len(setup) - 512 + 511) // 512)
    setup += bytes(512 * (sects + 1) - len(setup))
    setup[0x1f1] = sects
    struct.pack_into("<I", setup, 0x1f4, (len(body) + 15) // 16)
    struct.pack_into("<I", setup, 0x260, (init_size + 4095) & ~4095)
    with open(sys.argv[3], "wb") as f:
        f.write(setup)
        f.write(body)


if __name__ == "__main__":
    main()
