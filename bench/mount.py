#!/usr/bin/env python3
"""cairn mount benchmark: the FUSE mount against ext4 (and squashfuse) in one run.

Runs as root (drops caches, mounts). Measures:
  1. sequential read of a 1 GiB file added with defaults (256 KiB dag-pb leaves) and with
     --cid-version 1 (raw leaves), in three states:
       warm      read a second time through the mount (kernel page cache of the mount)
       blocks    block files in the page cache, first read through a fresh mount
       cold      caches dropped, fresh mount
     against ext4 reading the original file (warm / cold) and squashfuse serving it (cold);
  2. stat of 100,000 files (first pass through a fresh mount, then warm) vs ext4 (warm);
  3. find over the same tree (fresh mount) vs ext4 (warm);
  4. open+read+close of 10,000 small files (first pass and warm) vs ext4 (warm);
  5. start-up of a real program from the mount: python3 importing a set of stdlib modules,
     with its binary and standard library added to cairn, vs the same tree on ext4;
  6. with --passthrough: reading 256 single-block raw files (1 MiB each) vs ext4, cold.
Prints a Markdown table with ratios (cairn / reference, higher is better for throughput).

Usage: bench/mount.py [--work DIR] [--runs 3] [--size-mib 1024] [--files 100000]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FUSE_MAGIC = 0x65735546


def sh(*a, **kw):
    return subprocess.run(a, check=True, **kw)


def drop_caches():
    sh("sync")
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def is_fuse(p):
    try:
        out = subprocess.run(["stat", "-f", "-c", "%t", p], capture_output=True, text=True)
        return int(out.stdout.strip(), 16) == FUSE_MAGIC
    except ValueError:
        return False


class Mount:
    def __init__(self, cairn, root, mp, extra=()):
        self.mp = mp
        os.makedirs(mp, exist_ok=True)
        self.p = subprocess.Popen([cairn, "--root", root, "mount", mp, *extra],
                                  stderr=subprocess.DEVNULL)
        t = time.time()
        while not is_fuse(mp):
            if self.p.poll() is not None or time.time() - t > 30:
                raise SystemExit("mount failed")
            time.sleep(0.01)

    def close(self):
        self.p.terminate()
        self.p.wait(30)


class Squash:
    def __init__(self, image, mp):
        self.mp = mp
        os.makedirs(mp, exist_ok=True)
        sh("squashfuse", image, mp)

    def close(self):
        sh("umount", self.mp)


def read_file(path, bs=1 << 20):
    n = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(bs)
            if not b:
                return n
            n += len(b)


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def med(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/cairn-bench/mount"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--cairn", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cairn-target")), "release/cairn"))
    a = ap.parse_args()
    assert os.geteuid() == 0, "run as root (drops caches, mounts)"
    os.makedirs(a.work, exist_ok=True)
    cairn = a.cairn
    root = os.path.join(a.work, "root")
    shutil.rmtree(root, ignore_errors=True)
    sh(cairn, "--root", root, "init", stdout=subprocess.DEVNULL)
    add = lambda *args: subprocess.run([cairn, "--root", root, "add", "-Q", *args],
                                       check=True, capture_output=True, text=True).stdout.strip()
    mp = os.path.join(a.work, "mnt")
    size = a.size_mib << 20
    rows = []

    # Inputs.
    big = os.path.join(a.work, "big.bin")
    if not os.path.exists(big) or os.path.getsize(big) != size:
        with open(big, "wb") as f:
            for _ in range(a.size_mib):
                f.write(os.urandom(1 << 20))
    tree = os.path.join(a.work, "tree")
    if not os.path.isdir(tree):
        for i in range(a.files):
            d = os.path.join(tree, f"d{i // 1000:03d}")
            if i % 1000 == 0:
                os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"f{i:06d}"), "wb") as f:
                f.write(os.urandom(64 + (i % 512)))
    image = os.path.join(a.work, "big.squashfs")
    if not os.path.exists(image):
        sh("mksquashfs", big, image, "-noappend", "-noI", "-noD", "-noF", "-noX", "-no-progress", "-quiet", stdout=subprocess.DEVNULL)
    cid_v0 = add(big)
    cid_v1 = add("--cid-version=1", big)
    cid_tree = add("-r", tree)

    # 1. Sequential reads.
    def ext4(cold):
        ts = []
        for _ in range(a.runs):
            if cold:
                drop_caches()
            else:
                read_file(big)
            ts.append(timed(lambda: read_file(big)))
        return med(ts)

    ext4_warm, ext4_cold = ext4(False), ext4(True)
    sq = []
    for _ in range(a.runs):
        drop_caches()
        s = Squash(image, os.path.join(a.work, "sq"))
        sq.append(timed(lambda: read_file(os.path.join(s.mp, "big.bin"))))
        s.close()
    squash_cold = med(sq)
    for label, cid in (("defaults (256 KiB dag-pb leaves)", cid_v0), ("--cid-version 1 (raw leaves)", cid_v1)):
        warm, blocks, cold = [], [], []
        for _ in range(a.runs):
            # blocks: warm the block files, then a fresh mount.
            # (Only the big files have blocks above 100 KiB; a glob would overflow ARG_MAX.)
            sh("sh", "-c", f"find {root}/blocks -type f -size +100k -exec cat {{}} + > /dev/null")
            m = Mount(cairn, root, mp)
            p = os.path.join(mp, cid)
            blocks.append(timed(lambda: read_file(p)))
            warm.append(timed(lambda: read_file(p)))
            m.close()
            drop_caches()
            m = Mount(cairn, root, mp)
            cold.append(timed(lambda: read_file(p)))
            m.close()
        w, b, c = med(warm), med(blocks), med(cold)
        g = lambda t: f"{size / t / 1e9:.2f} GB/s"
        rows.append((f"1 GiB read, {label}, warm", g(w), f"ext4 warm {g(ext4_warm)}", ext4_warm / w))
        rows.append((f"1 GiB read, {label}, blocks in page cache", g(b), "goal 1.5 GB/s", (size / b / 1e9) / 1.5))
        rows.append((f"1 GiB read, {label}, cold", g(c), f"ext4 cold {g(ext4_cold)}", ext4_cold / c))
        rows.append((f"1 GiB read, {label}, cold", g(c), f"squashfuse cold {g(squash_cold)}", squash_cold / c))

    # 2-4. Metadata and small files.
    paths = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(tree) for f in fs)
    rel = [os.path.relpath(p, tree) for p in paths]
    small = rel[: min(10_000, len(rel))]

    def stat_all(base, names):
        for n in names:
            os.lstat(os.path.join(base, n))

    def read_all(base, names):
        # open+read+close as C programs do it. (Python's buffered open() adds an isatty()
        # ioctl, which FUSE forwards to the daemon every time: measured separately below.)
        for n in names:
            fd = os.open(os.path.join(base, n), os.O_RDONLY)
            os.read(fd, 1 << 16)
            os.close(fd)

    def read_all_buffered(base, names):
        for n in names:
            with open(os.path.join(base, n), "rb") as f:
                f.read()

    def find(base):
        sh("sh", "-c", f"find {base} > /dev/null")

    stat_all(tree, rel)
    read_all(tree, small)
    ext = {
        "stat": med([timed(lambda: stat_all(tree, rel)) for _ in range(a.runs)]),
        "find": med([timed(lambda: find(tree)) for _ in range(a.runs)]),
        "read": med([timed(lambda: read_all(tree, small)) for _ in range(a.runs)]),
        "pyread": med([timed(lambda: read_all_buffered(tree, small)) for _ in range(a.runs)]),
    }
    first = {"stat": [], "find": [], "read": []}
    warm = {"stat": [], "read": [], "pyread": []}
    for _ in range(a.runs):
        m = Mount(cairn, root, mp)
        base = os.path.join(mp, cid_tree)
        first["find"].append(timed(lambda: find(base)))
        m.close()
        m = Mount(cairn, root, mp)
        first["stat"].append(timed(lambda: stat_all(base, rel)))
        warm["stat"].append(timed(lambda: stat_all(base, rel)))
        m.close()
        m = Mount(cairn, root, mp)
        first["read"].append(timed(lambda: read_all(base, small)))
        warm["read"].append(timed(lambda: read_all(base, small)))
        warm["pyread"].append(timed(lambda: read_all_buffered(base, small)))
        m.close()
    n, k = len(rel), len(small)
    rate = lambda cnt, t: f"{cnt / t / 1000:.0f}k/s"
    rows.append((f"stat of {n} files, warm", rate(n, med(warm["stat"])), f"ext4 {rate(n, ext['stat'])}", ext["stat"] / med(warm["stat"])))
    rows.append((f"stat of {n} files, first pass", rate(n, med(first["stat"])), f"ext4 {rate(n, ext['stat'])}", ext["stat"] / med(first["stat"])))
    rows.append((f"find over {n + n // 1000 + 1} entries, fresh mount", f"{med(first['find']):.2f} s", f"ext4 {ext['find']:.2f} s", ext["find"] / med(first["find"])))
    rows.append((f"open+read+close of {k} small files, warm", rate(k, med(warm["read"])), f"ext4 {rate(k, ext['read'])}", ext["read"] / med(warm["read"])))
    rows.append((f"Python open().read() of {k} small files, warm (one ioctl round trip each)", rate(k, med(warm["pyread"])), f"ext4 {rate(k, ext['pyread'])}", ext["pyread"] / med(warm["pyread"])))
    rows.append((f"open+read+close of {k} small files, first pass", rate(k, med(first["read"])), f"ext4 {rate(k, ext['read'])}", ext["read"] / med(first["read"])))

    # 5. Program start-up: python3 with its standard library, from the mount.
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    sysexe = shutil.which("python3.11") or "/usr/bin/python3"
    pyroot = os.path.join(a.work, "pyroot")
    if not os.path.isdir(pyroot):
        os.makedirs(os.path.join(pyroot, "bin"))
        shutil.copy2(os.path.realpath(sysexe), os.path.join(pyroot, "bin/python3"))
        stdlib = subprocess.run([sysexe, "-c", "import sysconfig;print(sysconfig.get_paths()['stdlib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
        shutil.copytree(stdlib, os.path.join(pyroot, "lib", os.path.basename(stdlib)), symlinks=True,
                        ignore=shutil.ignore_patterns("test", "tests", "idlelib", "tkinter", "turtledemo"))
    # With mtimes: Python compares each .pyc with its source's mtime, and recompiles
    # everything (and tries to write the .pyc) when they differ.
    cid_py = add("-r", "--preserve-mode", "--preserve-mtime", pyroot)
    prog = "import json, email.parser, http.client, decimal, argparse, subprocess, asyncio"
    run = lambda base: sh(os.path.join(base, "bin/python3"), "-I", "-c", prog)
    run(pyroot)
    t_ext = med([timed(lambda: run(pyroot)) for _ in range(max(a.runs, 5))])
    m = Mount(cairn, root, mp)
    base = os.path.join(mp, cid_py)
    t_first = timed(lambda: run(base))
    t_warm = med([timed(lambda: run(base)) for _ in range(max(a.runs, 5))])
    m.close()
    rows.append(("python3 start-up (stdlib imports), warm", f"{t_warm * 1000:.0f} ms", f"ext4 {t_ext * 1000:.0f} ms", t_ext / t_warm))
    rows.append(("python3 start-up, first run on a fresh mount", f"{t_first * 1000:.0f} ms", f"ext4 {t_ext * 1000:.0f} ms", t_ext / t_first))

    # 6. Passthrough: single-block raw files.
    pt = os.path.join(a.work, "pt")
    if not os.path.isdir(pt):
        os.makedirs(pt)
        for i in range(256):
            with open(os.path.join(pt, f"p{i:03d}"), "wb") as f:
                f.write(os.urandom(1 << 20))
    cid_pt = add("-r", "--cid-version=1", "--chunker=size-1048576", pt)
    names = sorted(os.listdir(pt))
    def read_pt(base):
        for nm in names:
            read_file(os.path.join(base, nm))
    e, c, p = [], [], []
    for _ in range(a.runs):
        drop_caches()
        e.append(timed(lambda: read_pt(pt)))
        for extra, acc in (((), c), (("--passthrough",), p)):
            m = Mount(cairn, root, mp, extra)
            drop_caches()
            acc.append(timed(lambda: read_pt(os.path.join(mp, cid_pt))))
            m.close()
    tot = 256 << 20
    g = lambda t: f"{tot / t / 1e9:.2f} GB/s"
    rows.append(("256 single-block 1 MiB raw files, cold, --passthrough", g(med(p)), f"ext4 cold {g(med(e))}", med(e) / med(p)))
    rows.append(("256 single-block 1 MiB raw files, cold, without passthrough", g(med(c)), f"ext4 cold {g(med(e))}", med(e) / med(c)))

    print(f"cairn {cairn}; {os.cpu_count()} cores; kernel {os.uname().release}; median of {a.runs} runs\n")
    print("| measurement | cairn | reference | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f}x |")


if __name__ == "__main__":
    main()
