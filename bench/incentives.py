#!/usr/bin/env python3
"""cairn incentives benchmark: contributors against free-riders, real daemons on loopback.

A mirror of H holder daemons (default 4) that have every package, and N user daemons
(default 20), a fraction of which free-ride (`--no-serve`: they take and never give). Every
daemon has the same upload limit (default 256 KiB/s), so the holders are short of upload.

First the history the policy judges by: each contributor publishes 512 KiB of its own, which
every holder fetches from it (contributors gave), and every user fetches the same 2 MiB from
the mirror (everyone took). Then, measured, every user fetches a package of its own (default
2 MiB) at the same moment; the time each takes is recorded.

Scenarios:
  flash      users want their package and nothing else. Were the mirror's upload fully
             used to the end, free-riders would finish no later than (contributors' bytes +
             free-riders' bytes) / capacity after the start, 1.33x the contributors' time
             with 5 free-riders in 20; it is not (see BENCHMARKS.md), so they finish later.
  sustained  the mirror stays busy: a contributor that has its package goes straight on to
             the next one (B, as large), as a busy mirror's users would.
  honest     nobody free-rides (flash): the policy must cost nothing.
  vouched    newcomers vouched for through shared history against strangers: a chain of
             contributors K1 (which gave the mirror 2 MiB) and K2 (which gave K1 1 MiB) per
             pair of newcomers; one newcomer gave K1 1 MiB (two hops from the mirror), the
             other gave K2 1 MiB (three hops). Neither has met the mirror. Then, measured, the
             vouched newcomers and as many strangers (fresh identities, nothing given
             anywhere) fetch a package each from the mirror at once. History reaches the
             mirror only as statements K1 signs and K2's batch K1 relays (asked once a
             minute: the script waits 130 s for it). Columns: vouched newcomers in place of
             contributors, strangers in place of free-riders.
Each with the incentive policy on and off (`--no-incentives` on every daemon). Fresh roots
each run.

Prints a Markdown table: mean (and slowest) time of contributors and free-riders to their
package, and the ratio free-riders / contributors.

Usage: bench/incentives.py [--nodes 20] [--holders 4] [--free 5] [--mib 2] [--rate 256K]
                           [--runs 1] [--scenarios flash,sustained,honest,vouched]
                           [--pairs 3] [--cairn PATH]
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time

LOOP = "/ip4/127.0.0.1/tcp/0"
PROCS = []


def log(*a):
    print(*a, flush=True, file=os.sys.stderr)


def c(cairn, root, *args, timeout=600):
    r = subprocess.run([cairn, "--root", root, *args], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if r.returncode != 0:
        raise SystemExit(f"cairn {' '.join(args)} ({root}): {r.stderr.decode()[-2000:]}")
    return r.stdout.decode()


def daemon(cairn, root, extra, bootstrap):
    args = [cairn, "--root", root, "daemon", "--no-mount", "--no-mdns", "--no-dht",
            "--listen", LOOP, *extra]
    for b in bootstrap:
        args += ["--bootstrap", b]
    lf = open(root + ".log", "ab")
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
    lf.close()
    PROCS.append(p)
    end = time.time() + 60
    while True:
        with open(root + ".log", errors="replace") as f:
            if "daemon ready" in f.read():
                break
        if p.poll() is not None or time.time() > end:
            raise SystemExit(f"daemon {root} did not start")
        time.sleep(0.05)
    ident = json.loads(c(cairn, root, "swarm", "id", "--json"))
    addr = next(x for x in ident["addrs"] if x.startswith("/ip4/127.0.0.1/tcp/"))
    if "/p2p/" not in addr:
        addr += "/p2p/" + ident["peer"]
    p.addr, p.peer, p.root = addr, ident["peer"], root
    return p


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            p.terminate()
    for p in PROCS:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
    PROCS.clear()


def add_random(cairn, root, n, seed):
    f = os.path.join(root + ".in")
    with open(f, "wb") as out:
        out.write(random.Random(seed).randbytes(n))
    cid = c(cairn, root, "add", "-Q", "--cid-version", "1", f).strip()
    os.unlink(f)
    return cid


def run_once(a, work, free, policy, sustained):
    """One swarm: returns (contributor secs list, free-rider secs list)."""
    # A starved free-rider may wait long for a block: it must not give up (EIO) meanwhile.
    extra = ["--upload-limit", a.rate, "--fetch-timeout", "3600"]
    extra += [] if policy else ["--no-incentives"]
    mib = a.mib << 20
    # The mirror: holders with every package (same bytes, so the same CIDs), the history
    # dataset W and the background dataset B.
    holders, packages = [], []
    for h in range(a.holders):
        root = os.path.join(work, f"h{h}")
        os.makedirs(root)
        packages = [add_random(a.cairn, root, mib, 100 + i) for i in range(a.nodes)]
        w = add_random(a.cairn, root, 2 << 20, 3)
        b = add_random(a.cairn, root, mib, 4)
        holders.append(daemon(a.cairn, root, extra, [x.addr for x in holders]))
    # The users: contributors publish something of their own (G), free-riders serve nothing.
    users, given = [], {}
    for i in range(a.nodes):
        root = os.path.join(work, f"u{i}")
        os.makedirs(root)
        rider = i < free
        if not rider:
            given[i] = add_random(a.cairn, root, 512 << 10, 1000 + i)
        x = extra + (["--no-serve"] if rider else [])
        p = daemon(a.cairn, root, x, [h.addr for h in holders])
        p.rider, p.package = rider, packages[i]
        users.append(p)
    end = time.time() + 60
    for h in holders:
        while len(json.loads(c(a.cairn, h.root, "swarm", "peers", "--json"))) < a.nodes + a.holders - 1:
            if time.time() > end:
                raise SystemExit(f"{h.root} did not connect to every node")
            time.sleep(0.1)
    # History, the record the policy judges by: the mirror fetched what contributors
    # published (they served it), and every user fetched W (everyone took).
    hist = [subprocess.Popen([a.cairn, "--root", h.root, "fetch", g, "--no-pin"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
            for h in holders for g in given.values()]
    hist += [subprocess.Popen([a.cairn, "--root", u.root, "fetch", w, "--no-pin"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for u in users]
    for p in hist:
        if p.wait() != 0:
            raise SystemExit("a history fetch failed")
    # Measured: every user fetches its own package at once.
    t0 = time.perf_counter()
    fetches = {}
    for u in users:
        with open(u.root + ".fetch.log", "ab") as lf:
            fetches[u.peer] = subprocess.Popen(
                [a.cairn, "--root", u.root, "fetch", u.package, "--no-pin"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=lf)
    took, background = {}, []
    while len(took) < len(users):
        for u in users:
            p = fetches[u.peer]
            if u.peer not in took and p.poll() is not None:
                if p.returncode != 0:
                    with open(u.root + ".fetch.log", errors="replace") as f:
                        raise SystemExit(f"fetch on {u.root} failed: {f.read()[-1500:]}")
                took[u.peer] = time.perf_counter() - t0
                if sustained and not u.rider:
                    background.append(subprocess.Popen(
                        [a.cairn, "--root", u.root, "fetch", b, "--no-pin"],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL))
        time.sleep(0.02)
    for p in background:
        p.kill()
        p.wait()
    stop_all()
    contributors = [took[u.peer] for u in users if not u.rider]
    riders = [took[u.peer] for u in users if u.rider]
    return contributors, riders


def fetch_all(a, procs):
    """Waits for every (name, Popen) in procs; returns {name: seconds} from now."""
    t0 = time.perf_counter()
    took = {}
    while len(took) < len(procs):
        for name, p, log_path in procs:
            if name not in took and p.poll() is not None:
                if p.returncode != 0:
                    with open(log_path, errors="replace") as f:
                        raise SystemExit(f"fetch {name} failed: {f.read()[-1500:]}")
                took[name] = time.perf_counter() - t0
        time.sleep(0.02)
    return took


def fetch(a, root, cid):
    subprocess.run([a.cairn, "--root", root, "fetch", cid, "--no-pin"], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_vouched(a, work, policy):
    """Vouched newcomers against strangers: returns (vouched secs list, stranger secs list)."""
    extra = ["--upload-limit", a.rate, "--fetch-timeout", "3600"]
    extra += [] if policy else ["--no-incentives"]
    mib = a.mib << 20
    n = 2 * a.pairs
    holders, packages = [], []
    for h in range(a.holders):
        root = os.path.join(work, f"h{h}")
        os.makedirs(root)
        packages = [add_random(a.cairn, root, mib, 100 + i) for i in range(2 * n)]
        holders.append(daemon(a.cairn, root, extra, [x.addr for x in holders]))
    newcomers = []
    for i in range(a.pairs):
        roots = {}
        for name in ("n2", "n3", "k2", "k1"):
            roots[name] = os.path.join(work, f"{name}-{i}")
            os.makedirs(roots[name])
        gift = {name: add_random(a.cairn, roots[name], (2 if name == "k1" else 1) << 20,
                                 1000 + 10 * i + j)
                for j, name in enumerate(("n2", "n3", "k2", "k1"))}
        # Who gave whom, each pair connected alone: N3 -> K2 -> K1 -> mirror, N2 -> K1.
        dn3 = daemon(a.cairn, roots["n3"], extra, [])
        dn2 = daemon(a.cairn, roots["n2"], extra, [])
        dk2 = daemon(a.cairn, roots["k2"], extra, [dn3.addr])
        fetch(a, roots["k2"], gift["n3"])
        time.sleep(3)  # K2 signs at its next refresh; K1 asks it when they connect
        dk1 = daemon(a.cairn, roots["k1"], extra, [dk2.addr, dn2.addr])
        fetch(a, roots["k1"], gift["k2"])
        fetch(a, roots["k1"], gift["n2"])
        time.sleep(3)
        for h in holders:
            subprocess.run([a.cairn, "--root", roots["k1"], "swarm", "connect", h.addr],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        hist = [subprocess.Popen([a.cairn, "--root", h.root, "fetch", gift["k1"], "--no-pin"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL) for h in holders]
        for p in hist:
            if p.wait() != 0:
                raise SystemExit("a history fetch failed")
        newcomers += [dn2, dn3]
    # The strangers start now too, connected to nobody yet, so that both groups come to the
    # mirror alike (daemons long up, connecting at the same moment).
    strangers = []
    for i in range(n):
        root = os.path.join(work, f"s{i}")
        os.makedirs(root)
        strangers.append(daemon(a.cairn, root, extra, []))
    # History travels once a minute a hop: K1 asks K2, the mirror asks K1.
    log("waiting 130 s for shared history to reach the mirror")
    time.sleep(130)
    # The newcomers leave their contributors and come to the mirror, with as many strangers.
    procs = []
    everyone = []
    for i, (d, s) in enumerate(zip(newcomers, strangers)):
        for x in (d, s):
            for h in holders:
                subprocess.run([a.cairn, "--root", x.root, "swarm", "connect", h.addr],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        everyone.append(("vouched", d.root, packages[i]))
        everyone.append(("stranger", s.root, packages[n + i]))
    for kind, root, pkg in everyone:
        lf = open(root + ".fetch.log", "ab")
        procs.append(((kind, root), subprocess.Popen(
            [a.cairn, "--root", root, "fetch", pkg, "--no-pin"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=lf), root + ".fetch.log"))
        lf.close()
    took = fetch_all(a, procs)
    if policy:
        rows = json.loads(c(a.cairn, holders[0].root, "swarm", "ledger", "--json"))
        reps = {r["peer"]: r["reputation"] for r in rows}
        log("reputation at the first holder: " + ", ".join(
            f"{reps.get(d.peer, 0) / 2**20:.2f} MiB" for d in newcomers))
    stop_all()
    vouched = [t for (kind, _), t in took.items() if kind == "vouched"]
    strangers = [t for (kind, _), t in took.items() if kind == "stranger"]
    return vouched, strangers


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cairn-target"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cairn", default=os.path.join(target, "release/cairn"))
    ap.add_argument("--work", default=None)
    ap.add_argument("--nodes", type=int, default=20)
    ap.add_argument("--holders", type=int, default=4)
    ap.add_argument("--free", type=int, default=5)
    ap.add_argument("--mib", type=int, default=2)
    ap.add_argument("--rate", default="256K")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--scenarios", default="flash,sustained,honest,vouched")
    ap.add_argument("--pairs", type=int, default=3,
                    help="vouched: chains of contributors, two newcomers each")
    a = ap.parse_args()
    if not os.path.exists(a.cairn):
        raise SystemExit(f"no cairn binary at {a.cairn}: cargo build --release -p cairn")
    print(f"{a.holders} holders + {a.nodes} users, {a.free} free-riding; {a.mib} MiB packages; "
          f"upload limit {a.rate}/s each; {os.cpu_count()} cores; {a.runs} run(s)\n")
    print("| scenario | policy | contributors mean (max) s | free-riders mean (max) s | free / contrib |")
    print("|---|---|---|---|---|")
    for scenario in a.scenarios.split(","):
        free = 0 if scenario == "honest" else a.free
        for policy in (True, False):
            cs, fs = [], []
            for r in range(a.runs):
                work = tempfile.mkdtemp(prefix="cairn-incentives-", dir=a.work)
                try:
                    if scenario == "vouched":
                        c_, f_ = run_vouched(a, work, policy)
                    else:
                        c_, f_ = run_once(a, work, free, policy, scenario == "sustained")
                finally:
                    stop_all()
                    shutil.rmtree(work, ignore_errors=True)
                cs += c_
                fs += f_
                log(f"{scenario} policy={'on' if policy else 'off'} run {r}: contributors "
                    f"{statistics.mean(c_):.1f}s, free-riders {statistics.mean(f_) if f_ else 0:.1f}s")
            cm = f"{statistics.mean(cs):.1f} ({max(cs):.1f})"
            fm = f"{statistics.mean(fs):.1f} ({max(fs):.1f})" if fs else "–"
            ratio = f"{statistics.mean(fs) / statistics.mean(cs):.2f}×" if fs else "–"
            print(f"| {scenario} | {'on' if policy else 'off'} | {cm} | {fm} | {ratio} |", flush=True)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
