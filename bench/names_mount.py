#!/usr/bin/env python3
"""cairn names benchmark, the mount's side: `stat R/store/name/<name>/latest` from what the
daemon holds, against `stat` of a symlink on ext4.

One daemon (mounted, mDNS off, no peers) releases a version of a small tree under a fresh
key, so the name's record and list are held in its memory. Then, --runs times:
  cold  the kernel's dentries and inodes are dropped (`echo 2 > /proc/sys/vm/drop_caches`,
        root only), then one `os.stat` of `R/store/name/<k51>/latest/file` is timed: every
        component is a FUSE lookup, the name's answered from the daemon's memory;
  warm  the same `os.stat` again at once (the kernel's dentry cache, within the 1 s TTL);
and the same two for a path `link/file` on ext4 where `link` is a symlink to a directory,
under the bench's work directory. Prints p50 and p95 of each and the ratios.

Usage: bench/names_mount.py [--cairn PATH] [--runs 200] [--work DIR]
Needs root (drop_caches, the mount) and a build of cairn (release by default).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def drop_dentries():
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")


def timed_stats(path, runs):
    cold, warm = [], []
    for _ in range(runs):
        drop_dentries()
        t0 = time.perf_counter()
        os.stat(path)
        t1 = time.perf_counter()
        os.stat(path)
        t2 = time.perf_counter()
        cold.append((t1 - t0) * 1e6)
        warm.append((t2 - t1) * 1e6)
    return cold, warm


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cairn-target"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn", default=os.path.join(target, "release/cairn"))
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: it drops the kernel's dentry cache")
    work = a.work or tempfile.mkdtemp(prefix="cairn-names-mount-")
    root = os.path.join(work, "root")
    keys = os.path.join(work, "config")
    env = dict(os.environ, XDG_CONFIG_HOME=keys, RUST_LOG="warn")
    tree = os.path.join(work, "tree")
    os.makedirs(os.path.join(tree, "sub"), exist_ok=True)
    with open(os.path.join(tree, "file"), "w") as f:
        f.write("hello\n")
    # A peer, so that the release is acknowledged by one, as a publish must be.
    peer = subprocess.Popen([a.cairn, "--root", os.path.join(work, "peer"), "daemon", "--no-mdns",
                             "--no-mount", "--listen", "/ip4/127.0.0.1/tcp/0"],
                            stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL)
    addr = None
    for line in peer.stderr:
        line = line.decode().strip()
        if line.startswith("cairn: node "):
            node = line.split()[2]
        elif line.startswith("/ip4/127.0.0.1/tcp/"):
            addr = f"{line}/p2p/{node}"
        elif "ready" in line and addr:
            break
    daemon = subprocess.Popen([a.cairn, "--root", root, "daemon", "--no-mdns", "--listen",
                               "/ip4/127.0.0.1/tcp/0", "--bootstrap", addr],
                              stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL)
    try:
        for line in daemon.stderr:
            if b"mounted" in line:
                break
        else:
            raise SystemExit("the daemon did not mount")
        time.sleep(2)  # the DHT learning its one peer
        cid = subprocess.check_output([a.cairn, "--root", root, "add", "-Q", "-r", tree],
                                      env=env).decode().strip()
        # Offline on purpose: no peer to acknowledge; the release is kept here.
        out = subprocess.run([a.cairn, "--root", root, "release", "bench", "1.0", cid],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"release: {out.stderr}")
        k51 = out.stdout.rsplit("name ", 1)[1].strip().rstrip(")")
        path = os.path.join(root, "store", "name", k51, "latest", "file")
        for _ in range(100):
            if os.path.exists(path):
                break
            time.sleep(0.1)
        else:
            raise SystemExit(f"{path} never appeared")
        cold, warm = timed_stats(path, a.runs)
        ref = os.path.join(work, "ext4")
        os.makedirs(ref, exist_ok=True)
        shutil.copytree(tree, os.path.join(ref, "target"), dirs_exist_ok=True)
        if not os.path.islink(os.path.join(ref, "link")):
            os.symlink("target", os.path.join(ref, "link"))
        rcold, rwarm = timed_stats(os.path.join(ref, "link", "file"), a.runs)
        print(f"runs: {a.runs}; {path}")
        for what, c, r in (("cold (dentries dropped)", cold, rcold), ("warm", warm, rwarm)):
            print(f"{what:24} cairn p50 {pct(c, 50):7.1f} us p95 {pct(c, 95):7.1f} us | "
                  f"ext4 p50 {pct(r, 50):7.1f} us p95 {pct(r, 95):7.1f} us | "
                  f"ratio p50 {pct(c, 50) / pct(r, 50):.2f}x")
    finally:
        for p in (daemon, peer):
            p.terminate()
            p.wait(timeout=30)
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
