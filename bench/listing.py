#!/usr/bin/env python3
"""Listing a tree through a fresh cairn mount, three ways, against ext4 on a fresh mount.

Whoever lists decides what a listing costs: `find` reads names and kinds, `ls -l` and `du`
stat every entry. cairn gives a listing every entry's attributes (READDIRPLUS) only for
programs that have looked up a file, so each is measured on its own fresh mount:
  find TREE              (names and kinds)
  ls -l of 5 directories (1,000 entries each)
  du -s TREE             (a stat per entry)
The tree, its ext4 image and a root holding it are bench/mount.py's: run that first (as
root; it leaves them under --work). One untimed round first brings the binary, the index
and the blocks into the page cache, as they are in bench/mount.py by the time it lists.
Prints one line per run.

Usage: bench/listing.py [--work DIR] [--runs 3] [--cairn PATH]
"""
import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mount import Ext4Image, Mount, timed  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/cairn-bench/mount"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cairn", default=os.path.expanduser("~/.cache/cairn-target/release/cairn"))
    a = ap.parse_args()
    root, tree = os.path.join(a.work, "root"), os.path.join(a.work, "tree")
    mp = os.path.join(a.work, "mnt")
    cid = subprocess.run([a.cairn, "--root", root, "add", "-r", "-Q", "--only-hash", tree],
                         check=True, capture_output=True, text=True).stdout.strip()
    dirs = sorted(os.listdir(tree))[:5]
    quiet = {"stdout": subprocess.DEVNULL, "check": True}
    work = {
        "find": lambda base: subprocess.run(["find", base], **quiet),
        "ls -l 5 dirs": lambda base: subprocess.run(
            ["ls", "-l", *(os.path.join(base, d) for d in dirs)], **quiet),
        "du -s": lambda base: subprocess.run(["du", "-s", base], **quiet),
    }
    img = Ext4Image(tree, os.path.join(a.work, "tree.ext4"), os.path.join(a.work, "ext4mnt"))
    for name, run in work.items():
        m = Mount(a.cairn, root, mp)
        run(os.path.join(mp, cid))
        m.close()
    for _ in range(a.runs):
        line = []
        for name, run in work.items():
            base = img.fresh()
            t_ext = timed(lambda: run(base))
            m = Mount(a.cairn, root, mp)
            t = timed(lambda: run(os.path.join(mp, cid)))
            m.close()
            line.append(f"{name} {t:.3f} s (ext4 fresh mount {t_ext:.3f} s, {t_ext / t:.2f}x)")
        print("; ".join(line), flush=True)
    img.close()


if __name__ == "__main__":
    main()
