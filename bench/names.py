#!/usr/bin/env python3
"""cairn names benchmark: IPNS publish and resolve through one kubo DHT server, against Helia.

One kubo v0.22 (`--routing dhtserver`, its LAN DHT validates and serves /ipns/ records) on
127.0.0.1; every publisher and resolver knows only kubo. Measures, over --names names:
  cairn   a publisher daemon and a resolver daemon: `cairn name publish --key K CID` (a fresh
          key per name, made beforehand), then on the other `cairn name resolve --nocache NAME`;
          each command's wall time, process start and the control socket included;
  helia   Helia -> Helia with tests/support/helia_ipns.mjs: its reported ms per publish and
          per resolve (no Node.js start, no DHT warm-up);
  cache   `stat ROOT/store/name/...` is not built yet; instead `cairn name resolve --offline`
          (the daemon's own record, no network) as the cached path;
  release a `cairn release` on the publisher, then the resolver's `cairn versions --nocache`
          polled until the new version shows: the time from release to visible.
Prints p50 and p95 of each and the ratios cairn/Helia (lower is better for cairn).

Usage: bench/names.py [--cairn PATH] [--names 100] [--work DIR] [--keep]
Needs the interop peers (bash scripts/interop.sh) and a release build of cairn.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import net  # noqa: E402  (the shared helpers: processes, kubo, daemons)
from net import Bench, json_lines, log, read_json_line, run, spawn, stop  # noqa: E402



def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(xs):
    return f"p50 {pct(xs, 50):.1f} ms, p95 {pct(xs, 95):.1f} ms (n={len(xs)})"


def kubo_dhtserver(b):
    repo = b.path("kubo")
    port = net.free_port_block()
    p = spawn([b.kubo_py, b.kubo_peer, repo, str(port), "--routing", "dhtserver", "--stay", "864000"],
              repo + ".log", stdout=subprocess.PIPE, cwd=b.work)
    p.grace = 2
    info = read_json_line(p, 120, "kubo")
    p.addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{info['peerId']}"
    return p


def timed(args, env=None):
    t0 = time.perf_counter()
    r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    ms = (time.perf_counter() - t0) * 1000
    if r.returncode != 0:
        raise SystemExit(f"exit {r.returncode}: {' '.join(args)}\n{r.stderr.decode(errors='replace')}")
    return ms, r.stdout.decode()


def cairn_part(b, kubo, n, res):
    keys = b.path("keys")
    os.makedirs(keys, mode=0o700)
    env = dict(os.environ, XDG_CONFIG_HOME=keys)
    pub_root, cids = b.init_root("publisher", [__file__])
    res_root, _ = b.init_root("resolver")
    pub = b.daemon(pub_root, [kubo.addr])
    rsv = b.daemon(res_root, [kubo.addr])
    b.wait_peers(pub_root, [kubo.addr.rsplit("/", 1)[1]])
    b.wait_peers(res_root, [kubo.addr.rsplit("/", 1)[1]])
    time.sleep(2)  # identify, then both DHT tables hold kubo
    names = [subprocess.run([b.cairn, "key", "gen", f"k{i}"], env=env, check=True, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL).stdout.decode().strip() for i in range(n)]
    pubs, gets, cached = [], [], []
    for i, name in enumerate(names):
        ms, _ = timed([b.cairn, "--root", pub_root, "name", "publish", "--key", f"k{i}", cids[0]], env)
        pubs.append(ms)
    for name in names:
        ms, out = timed([b.cairn, "--root", res_root, "name", "resolve", "--nocache", name])
        if out.strip() != f"/ipfs/{cids[0]}":
            raise SystemExit(f"resolved {name} to {out!r}")
        gets.append(ms)
    for name in names:
        ms, _ = timed([b.cairn, "--root", res_root, "name", "resolve", "--offline", name])
        cached.append(ms)
    # A release on the publisher, visible on the resolver.
    seen = []
    for v in range(5):
        t0 = time.perf_counter()
        subprocess.run([b.cairn, "--root", pub_root, "release", "bench", f"1.{v}", cids[0]], env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        name = json.loads(subprocess.run([b.cairn, "key", "list", "--json"], env=env, check=True,
                                         stdout=subprocess.PIPE).stdout)
        k = next(x["ipns"] for x in name if x["name"] == "bench")
        while True:
            r = subprocess.run([b.cairn, "--root", res_root, "versions", "--json", "--nocache", k],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            if r.returncode == 0 and any(x["version"] == f"1.{v}" for x in json.loads(r.stdout)["versions"]):
                break
            if time.perf_counter() - t0 > 30:
                raise SystemExit("a release not visible within 30 s")
        seen.append((time.perf_counter() - t0) * 1000)
    res["cairn"] = {"publish": pubs, "resolve": gets, "cached": cached, "release_visible": seen}
    stop(pub)
    stop(rsv)


def helia_part(b, kubo, n, res):
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../tests/support/helia_ipns.mjs")
    shutil.copy(script, os.path.join(b.helia, "helia_ipns.mjs"))
    node = ["node", "--import", "./node20-polyfills.mjs", "helia_ipns.mjs", "--bootstrap", kubo.addr]
    value = "/ipfs/bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    out = run(node + ["publish", "--count", str(n), "--value", value], b.logf("helia-pub"), timeout=600, cwd=b.helia)
    pubs = [x for x in json_lines(out) if "name" in x]
    names = [x["name"] for x in pubs]
    out = run(node + ["resolve", *names], b.logf("helia-get"), timeout=600, cwd=b.helia)
    gets = [x for x in json_lines(out) if "name" in x]
    bad = [x for x in gets if x.get("value") != value]
    if bad:
        raise SystemExit(f"Helia resolved wrongly: {bad[:3]}")
    res["helia"] = {"publish": [x["ms"] for x in pubs], "resolve": [x["ms"] for x in gets]}


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cairn-target"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--cairn", default=os.path.join(target, "release/cairn"))
    ap.add_argument("--names", type=int, default=100)
    ap.add_argument("--work")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--interop", default=os.environ.get("CAIRN_INTEROP", os.path.expanduser("~/.cache/cairn-interop")))
    a = ap.parse_args()
    a.work = a.work or tempfile.mkdtemp(prefix="cairn-names-bench-")
    b = Bench(a)
    res = {}
    try:
        kubo = kubo_dhtserver(b)
        log(f"kubo DHT server at {kubo.addr}")
        cairn_part(b, kubo, a.names, res)
        helia_part(b, kubo, a.names, res)
    finally:
        for p in list(net.PROCS):
            stop(p)
        if not a.keep:
            shutil.rmtree(a.work, ignore_errors=True)
    c, h = res["cairn"], res["helia"]
    print(f"cairn publish: {summary(c['publish'])}")
    print(f"helia publish: {summary(h['publish'])}")
    print(f"cairn resolve (uncached): {summary(c['resolve'])}")
    print(f"helia resolve (uncached): {summary(h['resolve'])}")
    print(f"cairn resolve --offline (cached): {summary(c['cached'])}")
    print(f"cairn release -> visible on another node: {summary(c['release_visible'])}")
    for what in ("publish", "resolve"):
        for p in (50, 95):
            print(f"ratio cairn/helia {what} p{p}: {pct(c[what], p) / pct(h[what], p):.2f}x")


if __name__ == "__main__":
    main()
