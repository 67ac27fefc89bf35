#!/usr/bin/env python3
"""cairn mount benchmark: the FUSE mount against ext4 (and squashfuse) in one run.

Runs as root (drops caches, mounts). Measures:
  1. sequential read of a 1 GiB file added with defaults (256 KiB dag-pb leaves) and with
     --cid-version 1 (raw leaves), in three states:
       warm      read a second time through the mount (kernel page cache of the mount)
       blocks    block files in the page cache, first read through a fresh mount
       cold      caches dropped, fresh mount
     against ext4 reading the original file (warm / cold) and squashfuse serving it (cold);
  2. stat of 100,000 files (first pass through a fresh mount, then warm) vs ext4 (warm, and
     its own first pass on a fresh mount);
  3. find over the same tree (fresh mount) vs ext4 (warm, and on a fresh mount);
  4. open+read+close of 10,000 small files (first pass and warm) vs ext4 (warm, and its own
     first pass on a fresh mount);
  5. start-up of real programs from the app view (R/store/app/<cid>/), vs the same tree on
     ext4, warm, first run on a fresh mount (blocks in the page cache; against ext4 warm,
     and against ext4's own first run on a fresh mount) and cold (caches dropped, both
     sides): python3 importing a set of stdlib modules (binary and standard
     library added with --app), and a gcc-built program linked against 200 shared
     libraries of its own, found through an RPATH into its placeholder prefix;
  6. with --passthrough: reading 256 single-block raw files (1 MiB each) vs ext4, cold.
The mount serves through per-CPU io_uring queues (the script turns on
/sys/module/fuse/parameters/enable_uring); the first passes and first runs are also measured
through /dev/fuse (`cairn mount --no-uring`), as a third reference.
ext4 on a fresh mount is the same tree in an ext4 image (mke2fs -d) on a loop device, the
image in the page cache, mounted anew before each pass: what a kernel filesystem pays when
it has no inodes or dentries yet, which is the state a fresh FUSE mount starts in.
Prints a Markdown table with ratios (cairn / reference, higher is better for throughput).

Usage: bench/mount.py [--work DIR] [--runs 3] [--size-mib 1024] [--files 100000] [--skip-reads]
(--skip-reads leaves out the large-file sections 1 and 6.)
"""
import argparse
import os
import shutil
import statistics
import subprocess
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


class Ext4Image:
    """`src` as an ext4 image on a loop device, mounted read-only at `mp` with its image in
    the page cache and nothing of it in the dcache or icache."""

    def __init__(self, src, image, mp):
        self.image, self.mp = image, mp
        if not os.path.exists(image):
            # Allocated size (small files take a block each), and room for the inode tables.
            du = int(subprocess.run(["du", "-sk", src], check=True, capture_output=True,
                                    text=True).stdout.split()[0]) << 10
            files = sum(len(fs) + len(ds) for _, ds, fs in os.walk(src))
            with open(image, "wb") as f:
                f.truncate(max(64 << 20, du * 3))
            sh("mke2fs", "-q", "-F", "-t", "ext4", "-N", str(files * 2 + 1024), "-d", src, image)
        os.makedirs(mp, exist_ok=True)
        self.mounted = False

    def fresh(self):
        if self.mounted:
            sh("umount", self.mp)
        read_file(self.image)
        sh("mount", "-o", "loop,ro", self.image, self.mp)
        self.mounted = True
        return self.mp

    def close(self):
        if self.mounted:
            sh("umount", self.mp)
            self.mounted = False


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
    ap.add_argument("--skip-reads", action="store_true")
    ap.add_argument("--cairn", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cairn-target")), "release/cairn"))
    a = ap.parse_args()
    assert os.geteuid() == 0, "run as root (drops caches, mounts)"
    with open("/sys/module/fuse/parameters/enable_uring", "w") as f:
        f.write("1\n")
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
    if not os.path.exists(image) and not a.skip_reads:
        sh("mksquashfs", big, image, "-noappend", "-noI", "-noD", "-noF", "-noX", "-no-progress", "-quiet", stdout=subprocess.DEVNULL)
    cid_tree = add("-r", tree)
    if not a.skip_reads:
        sequential_reads(a, cairn, root, mp, add, big, image, size, rows)
    metadata(a, cairn, root, mp, tree, cid_tree, rows)
    startup(a, cairn, root, mp, add, rows)
    if not a.skip_reads:
        passthrough(a, cairn, root, mp, add, rows)

    print(f"cairn {cairn}; {os.cpu_count()} cores; kernel {os.uname().release}; median of {a.runs} runs\n")
    print("| measurement | cairn | reference | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f}x |")


def sequential_reads(a, cairn, root, mp, add, big, image, size, rows):
    cid_v0 = add(big)
    cid_v1 = add("--cid-version=1", big)

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



def metadata(a, cairn, root, mp, tree, cid_tree, rows):
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
    img = Ext4Image(tree, os.path.join(a.work, "tree.ext4"), os.path.join(a.work, "ext4mnt"))
    ext_fresh = {"stat": [], "find": [], "read": []}
    for _ in range(a.runs):
        base = img.fresh()
        ext_fresh["stat"].append(timed(lambda: stat_all(base, rel)))
        base = img.fresh()
        ext_fresh["find"].append(timed(lambda: find(base)))
        base = img.fresh()
        ext_fresh["read"].append(timed(lambda: read_all(base, small)))
    img.close()
    first = {"stat": [], "find": [], "read": []}
    warm = {"stat": [], "read": [], "pyread": []}
    classic = {"stat": [], "find": []}
    for _ in range(a.runs):
        m = Mount(cairn, root, mp, ("--no-uring",))
        base = os.path.join(mp, cid_tree)
        classic["find"].append(timed(lambda: find(base)))
        m.close()
        m = Mount(cairn, root, mp, ("--no-uring",))
        classic["stat"].append(timed(lambda: stat_all(base, rel)))
        m.close()
        m = Mount(cairn, root, mp)
        base = os.path.join(mp, cid_tree)
        first["find"].append(timed(lambda: find(base)))
        m.close()
        m = Mount(cairn, root, mp)
        first["stat"].append(timed(lambda: stat_all(base, rel)))
        warm["stat"].append(timed(lambda: stat_all(base, rel)))
        m.close()
        # The small files' blocks in the page cache, as the ext4 image is for its fresh
        # mount (an earlier drop_caches left them on disk, and the first pass read them
        # from there: 16k/s, not the mount's cost).
        sh("sh", "-c", f"find {root}/blocks -type f -size -100k -exec cat {{}} + > /dev/null")
        m = Mount(cairn, root, mp)
        first["read"].append(timed(lambda: read_all(base, small)))
        warm["read"].append(timed(lambda: read_all(base, small)))
        warm["pyread"].append(timed(lambda: read_all_buffered(base, small)))
        m.close()
    n, k = len(rel), len(small)
    rate = lambda cnt, t: f"{cnt / t / 1000:.0f}k/s"
    rows.append((f"stat of {n} files, warm", rate(n, med(warm["stat"])), f"ext4 {rate(n, ext['stat'])}", ext["stat"] / med(warm["stat"])))
    rows.append((f"stat of {n} files, first pass", rate(n, med(first["stat"])), f"ext4 {rate(n, ext['stat'])}", ext["stat"] / med(first["stat"])))
    rows.append((f"stat of {n} files, first pass", rate(n, med(first["stat"])), f"ext4 fresh mount {rate(n, med(ext_fresh['stat']))}", med(ext_fresh["stat"]) / med(first["stat"])))
    rows.append((f"stat of {n} files, first pass", rate(n, med(first["stat"])), f"/dev/fuse {rate(n, med(classic['stat']))}", med(classic["stat"]) / med(first["stat"])))
    rows.append((f"find over {n + n // 1000 + 1} entries, fresh mount", f"{med(first['find']):.2f} s", f"ext4 {ext['find']:.2f} s", ext["find"] / med(first["find"])))
    rows.append((f"find over {n + n // 1000 + 1} entries, fresh mount", f"{med(first['find']):.2f} s", f"/dev/fuse {med(classic['find']):.2f} s", med(classic["find"]) / med(first["find"])))
    rows.append((f"find over {n + n // 1000 + 1} entries, fresh mount", f"{med(first['find']):.2f} s", f"ext4 fresh mount {med(ext_fresh['find']):.2f} s", med(ext_fresh["find"]) / med(first["find"])))
    rows.append((f"open+read+close of {k} small files, warm", rate(k, med(warm["read"])), f"ext4 {rate(k, ext['read'])}", ext["read"] / med(warm["read"])))
    rows.append((f"Python open().read() of {k} small files, warm (one ioctl round trip each)", rate(k, med(warm["pyread"])), f"ext4 {rate(k, ext['pyread'])}", ext["pyread"] / med(warm["pyread"])))
    rows.append((f"open+read+close of {k} small files, first pass", rate(k, med(first["read"])), f"ext4 {rate(k, ext['read'])}", ext["read"] / med(first["read"])))
    rows.append((f"open+read+close of {k} small files, first pass", rate(k, med(first["read"])), f"ext4 fresh mount {rate(k, med(ext_fresh['read']))}", med(ext_fresh["read"]) / med(first["read"])))



def startup(a, cairn, root, mp, add, rows):
    # 5. Program start-up from the app view.
    placeholder = subprocess.run([cairn, "--root", root, "app", "placeholder"], check=True,
                                 capture_output=True, text=True).stdout.strip()
    pyroot = os.path.join(a.work, "pyroot")
    if not os.path.isdir(pyroot):
        sysexe = shutil.which("python3.11") or "/usr/bin/python3"
        os.makedirs(os.path.join(pyroot, "bin"))
        shutil.copy2(os.path.realpath(sysexe), os.path.join(pyroot, "bin/python3"))
        stdlib = subprocess.run([sysexe, "-c", "import sysconfig;print(sysconfig.get_paths()['stdlib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
        shutil.copytree(stdlib, os.path.join(pyroot, "lib", os.path.basename(stdlib)), symlinks=True,
                        ignore=shutil.ignore_patterns("test", "tests", "idlelib", "tkinter", "turtledemo"))
    # With mtimes: Python compares each .pyc with its source's mtime, and recompiles
    # everything (and tries to write the .pyc) when they differ.
    cid_py = add("--app", "--preserve-mtime", pyroot)
    prog = "import json, email.parser, http.client, decimal, argparse, subprocess, asyncio"
    py = lambda base: sh(os.path.join(base, "bin/python3"), "-I", "-c", prog)

    # A program with 200 shared libraries of its own, built for the placeholder prefix.
    libs = os.path.join(a.work, "manylibs")
    prefix = os.path.join(root, "store/app", placeholder)
    if not os.path.isdir(libs):
        src = os.path.join(a.work, "manylibs-src")
        os.makedirs(src, exist_ok=True)
        os.makedirs(os.path.join(libs, "lib"))
        os.makedirs(os.path.join(libs, "bin"))
        for i in range(200):
            c = os.path.join(src, f"l{i}.c")
            with open(c, "w") as f:
                f.write(f"int f{i}(int x) {{ return x + {i}; }}\n")
            sh("gcc", "-shared", "-fPIC", "-O1", "-o", os.path.join(libs, "lib", f"libl{i}.so"), c)
        with open(os.path.join(src, "main.c"), "w") as f:
            f.write("".join(f"int f{i}(int);\n" for i in range(200)))
            f.write("int main(void) { int s = 0;\n")
            f.write("".join(f"  s = f{i}(s);\n" for i in range(200)))
            f.write("  return s == 19900 ? 0 : 1; }\n")
        sh("gcc", "-O1", "-o", os.path.join(libs, "bin/many"), os.path.join(src, "main.c"),
           "-L", os.path.join(libs, "lib"), *[f"-ll{i}" for i in range(200)],
           f"-Wl,-rpath,{prefix}/lib", "-Wl,--disable-new-dtags")
    cid_libs = add("--app", libs)
    # On ext4 the same build, with the placeholder prefix made a symlink to it.
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    many = lambda base: sh(os.path.join(base, "bin/many"))

    for label, tree, cid, run in (("python3 start-up (stdlib imports)", pyroot, cid_py, py),
                                  ("a program with 200 shared libraries", libs, cid_libs, many)):
        # ext4: run in place (for the library program, through its placeholder prefix, which
        # the mount is not using yet: a symlink to the build).
        link = None
        if tree == libs:
            store = os.path.join(root, "store")
            os.makedirs(os.path.join(store, "app"), exist_ok=True)
            link = prefix
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(libs, link)
        img = Ext4Image(tree, os.path.join(a.work, os.path.basename(tree) + ".ext4"),
                        os.path.join(a.work, "ext4mnt"))
        first_ext = []
        for _ in range(a.runs):
            base = img.fresh()
            if link:
                os.remove(link)
                os.symlink(base, link)
            first_ext.append(timed(lambda: run(base)))
        img.close()
        if link:
            os.remove(link)
            os.symlink(tree, link)
        run(tree)
        t_ext = med([timed(lambda: run(tree)) for _ in range(max(a.runs, 5))])
        cold_ext = []
        for _ in range(a.runs):
            drop_caches()
            cold_ext.append(timed(lambda: run(tree)))
        if link:
            os.remove(link)
        first, warm, cold, first_classic = [], [], [], []
        for _ in range(a.runs):
            sh("sh", "-c", f"find {root}/blocks -type f -exec cat {{}} + > /dev/null")
            m = Mount(cairn, root, os.path.join(root, "store"), ("--no-uring",))
            base = os.path.join(root, "store/app", cid)
            first_classic.append(timed(lambda: run(base)))
            m.close()
            m = Mount(cairn, root, os.path.join(root, "store"))
            base = os.path.join(root, "store/app", cid)
            first.append(timed(lambda: run(base)))
            warm.append(med([timed(lambda: run(base)) for _ in range(5)]))
            m.close()
            drop_caches()
            m = Mount(cairn, root, os.path.join(root, "store"))
            cold.append(timed(lambda: run(base)))
            m.close()
        ms = lambda t: f"{t * 1000:.0f} ms"
        rows.append((f"{label}, warm", ms(med(warm)), f"ext4 {ms(t_ext)}", t_ext / med(warm)))
        rows.append((f"{label}, first run on a fresh mount (blocks in page cache)", ms(med(first)), f"ext4 warm {ms(t_ext)}", t_ext / med(first)))
        rows.append((f"{label}, first run on a fresh mount (blocks in page cache)", ms(med(first)), f"ext4 fresh mount {ms(med(first_ext))}", med(first_ext) / med(first)))
        rows.append((f"{label}, first run on a fresh mount (blocks in page cache)", ms(med(first)), f"/dev/fuse {ms(med(first_classic))}", med(first_classic) / med(first)))
        rows.append((f"{label}, cold (caches dropped)", ms(med(cold)), f"ext4 cold {ms(med(cold_ext))}", med(cold_ext) / med(cold)))


def passthrough(a, cairn, root, mp, add, rows):
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


if __name__ == "__main__":
    main()
