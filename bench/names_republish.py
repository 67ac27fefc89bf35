#!/usr/bin/env python3
"""cairn names benchmark: how long a follower takes to republish N followed names.

Two daemons on 127.0.0.1 (mDNS off): a publisher P and a follower F, F bootstrapped from P.
P publishes N names (a fresh key each, `cairn name publish`, paced under the 100 puts a
second a DHT peer takes from one sender); F follows all of them; F is
restarted with `names.republish` set, and the republish round it starts with once P is
connected is timed from its own log line ("republished N names in S s"). Reference: the
time P took to publish the same N names (one `cairn name publish` process each), measured
in the same run.

Usage: bench/names_republish.py [--cairn PATH] [--names 1000] [--work DIR]
Needs a build of cairn (release by default).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def start(cairn, root, env, extra, log):
    p = subprocess.Popen([cairn, "--root", root, "daemon", "--no-mdns", "--no-mount", "--listen",
                          "/ip4/127.0.0.1/tcp/0"] + extra, stderr=open(log, "w"), env=env,
                         stdin=subprocess.DEVNULL)
    for _ in range(300):
        text = open(log).read()
        if "ready" in text:
            node = re.search(r"node (\S+) listening", text).group(1)
            addr = re.search(r"(/ip4/127\.0\.0\.1/tcp/\d+)", text).group(1)
            return p, f"{addr}/p2p/{node}"
        time.sleep(0.1)
    raise SystemExit(f"no daemon: {open(log).read()[-2000:]}")


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cairn-target"))
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairn", default=os.path.join(target, "release/cairn"))
    ap.add_argument("--names", type=int, default=1000)
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="cairn-republish-")
    env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(work, "config"), RUST_LOG="info")
    proot, froot = os.path.join(work, "p"), os.path.join(work, "f")
    os.makedirs(froot, exist_ok=True)
    with open(os.path.join(froot, "config.toml"), "w") as f:
        f.write(f"[names]\nrepublish = 3600\nfollow_per_user = {a.names}\n")
    procs = []
    try:
        p, paddr = start(a.cairn, proot, env, [], os.path.join(work, "p.log"))
        procs.append(p)
        # The follower's user is another (its own keys would be re-signed, not followed).
        fenv = dict(env, XDG_CONFIG_HOME=os.path.join(work, "fconfig"))
        f, _ = start(a.cairn, froot, fenv, ["--bootstrap", paddr], os.path.join(work, "f.log"))
        procs.append(f)
        time.sleep(2)
        cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
        names = []
        t0 = time.perf_counter()
        for i in range(a.names):
            k = f"k{i}"
            subprocess.run([a.cairn, "--root", proot, "key", "gen", k], env=env, check=True,
                           capture_output=True)
        t1 = time.perf_counter()
        for i in range(a.names):
            # Under the 100 puts a second (50 names into two DHTs) a peer takes from one sender.
            time.sleep(0.025)
            r = subprocess.run([a.cairn, "--root", proot, "name", "publish", "--key", f"k{i}", cid],
                               env=env, capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"publishing k{i}: {r.stderr}")
            names.append(r.stdout.split("Published to ")[1].split(":")[0])
        publish_s = time.perf_counter() - t1
        # Each follow resolves its name first (about a second with one peer): 32 at once.
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda n: subprocess.run(
                [a.cairn, "--root", froot, "name", "follow", n], env=fenv, check=True,
                capture_output=True), names))
        f.terminate()
        f.wait(timeout=30)
        procs.remove(f)
        f, _ = start(a.cairn, froot, fenv, ["--bootstrap", paddr], os.path.join(work, "f2.log"))
        procs.append(f)
        for _ in range(3000):
            m = re.search(r"republished (\d+) names in ([\d.]+) s", open(os.path.join(work, "f2.log")).read())
            if m:
                break
            time.sleep(0.1)
        else:
            raise SystemExit("no republish round logged")
        n, secs = int(m.group(1)), float(m.group(2))
        print(f"names: {a.names} (keys made in {t1 - t0:.1f} s)")
        print(f"publishing them, one `cairn name publish` each: {publish_s:.1f} s")
        print(f"the follower republishing them: {n} in {secs:.1f} s "
              f"({secs / max(publish_s, 1e-9):.2f}x the publishing)")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
