#!/usr/bin/env python3
"""One first pass and one warm pass over a tree through some mount, for by-hand comparisons
(thread counts, CPU pinning) that bench/mount.py does not vary.

  bench/statpass.py stat MOUNTED_TREE [--tree ORIGINAL]   # os.lstat of every file, by path
  bench/statpass.py find MOUNTED_TREE                     # `find` over the tree

MOUNTED_TREE is the tree as a fresh mount shows it (for example R/store/<cid> of the tree
bench/mount.py adds); ORIGINAL is where the names come from (default: bench/mount.py's tree).
Example, daemon and caller on one CPU:
  taskset -c 0 cairn --root R mount MNT & taskset -c 0 bench/statpass.py stat MNT/<cid>
"""
import argparse
import os
import subprocess
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["stat", "find"])
    ap.add_argument("base")
    ap.add_argument("--tree", default=os.path.expanduser("~/.cache/cairn-bench/mount/tree"))
    a = ap.parse_args()
    if a.what == "stat":
        rel = sorted(os.path.relpath(os.path.join(dp, f), a.tree)
                     for dp, _, fs in os.walk(a.tree) for f in fs)

        def once():
            t = time.perf_counter()
            for n in rel:
                os.lstat(os.path.join(a.base, n))
            return time.perf_counter() - t
        first, warm = once(), once()
        print(f"stat first {len(rel) / first / 1000:.0f}k/s warm {len(rel) / warm / 1000:.0f}k/s")
    else:
        def once():
            t = time.perf_counter()
            subprocess.run(["sh", "-c", f"find '{a.base}' > /dev/null"], check=True)
            return time.perf_counter() - t
        first, warm = once(), once()
        print(f"find first {first:.3f} s warm {warm:.3f} s")


if __name__ == "__main__":
    main()
