#!/usr/bin/env python3
"""How a file sits in the page cache: 4 KiB pages or large folios.

Maps FILE (its first 64 MiB), touches every page, and reads the flags of the frames behind
them from /proc/self/pagemap and /proc/kpageflags (root only). Prints how many are
compound heads and tails: large folios show as one head and many tails; plain pages as
neither. Used in BENCHMARKS.md to compare ext4 with the FUSE mount.

Usage: bench/folio.py FILE
"""
import mmap
import os
import struct
import sys

COMPOUND_HEAD, COMPOUND_TAIL = 15, 16


def main():
    path = os.path.abspath(sys.argv[1])
    fd = os.open(path, os.O_RDONLY)
    size = min(os.fstat(fd).st_size, 64 << 20)
    m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    for i in range(0, size, 4096):
        m[i]
    start = None
    with open("/proc/self/maps") as maps:
        for line in maps:
            if line.rstrip().endswith(path):
                start = int(line.split("-")[0], 16)
                break
    assert start is not None, "mapping not found"
    heads = tails = 0
    with open("/proc/self/pagemap", "rb") as pm, open("/proc/kpageflags", "rb") as kf:
        for i in range(size // 4096):
            pm.seek((start // 4096 + i) * 8)
            entry = struct.unpack("Q", pm.read(8))[0]
            if not entry >> 63:
                continue
            kf.seek((entry & ((1 << 55) - 1)) * 8)
            flags = struct.unpack("Q", kf.read(8))[0]
            heads += (flags >> COMPOUND_HEAD) & 1
            tails += (flags >> COMPOUND_TAIL) & 1
    print(f"{path}: {size // 4096} pages, {heads} compound heads, {tails} tails")


if __name__ == "__main__":
    main()
