#!/usr/bin/env python3
"""cairn git benchmark: clone, fetch and push through two cairn daemons, against git daemon.

For each repository (--repos):
  self    this project's history (`git clone --mirror` of the checkout this script is in);
  medium  a seeded history of real text: crate sources from cargo's cache
          (~/.cargo/registry/src), one commit per crate added under crates/<name>, then
          --edits commits each changing a few files (random with --seed); --max-mib caps the
          text read.
and for each of --runs runs (median printed):
  clone   `git clone --bare` through git-remote-cairn on a fresh daemon B that knows only
          the publisher A's address (B's store empty, the daemon started and connected
          before the clock starts), against `git clone --bare git://127.0.0.1` from
          `git daemon` and `git clone --bare --no-local file://`; bytes B received against
          the size of git's own pack of the repository;
  fetch   one commit changing one file pushed, then `git fetch` in the clone (cairn) against
          `git fetch` from git daemon;
  push    that commit's `git push` to cairn://<key>/<repo> against `git push` to git daemon.
  swarm   (--swarm, on the medium repository) the publisher behind an upload limit: a network
          namespace joined by a veth pair whose namespace side is shaped with tc tbf at
          --swarm-rate; 8 empty cairn daemons in the root namespace (each knowing the
          publisher and the cloners started before it) run `git clone --bare
          cairn://<key>/medium` at once, against 8 `git clone --bare` at once from `git
          daemon` in the same namespace behind the same limit. Wall time until the last
          clone, and what the publisher sent (the veth's counters) against the pack.
Ratios are cairn / git daemon (lower is better for cairn; goals from the git issue: clone
<= 1.5x, bytes <= 1.2x the pack, fetch <= 3x and <= 0.5 s, push <= 3x; swarm <= 0.5x the
time, the publisher sending <= 2x the pack). Every cairn figure
includes its processes: git, git-remote-cairn, and each `cairn` command it runs.

Usage: bench/git.py [--cairn PATH] [--repos self,medium] [--runs 3] [--max-mib 300]
                    [--edits 200] [--seed 1] [--swarm] [--swarm-rate 100mbit] [--work DIR] [--keep]
Needs a release build of cairn and git-remote-cairn side by side
(cargo build --release -p cairn -p cairn-git).
"""

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import net  # noqa: E402
from net import Bench, log, spawn, stop  # noqa: E402

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(args, cwd, env=None, quiet=True):
    r = subprocess.run(["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} (in {cwd}) failed:\n{r.stderr.decode(errors='replace')}")
    return r.stdout.decode(errors="replace")


def timed_git(args, cwd, env=None):
    t0 = time.perf_counter()
    git(args, cwd, env)
    return time.perf_counter() - t0


def medium_repo(dest, max_mib, edits, seed):
    """A history of real text: one commit per crate of cargo's cache, then `edits` edits."""
    src = os.path.expanduser("~/.cargo/registry/src")
    crates = sorted(os.path.join(src, idx, c) for idx in os.listdir(src)
                    for c in os.listdir(os.path.join(src, idx)))
    rng = random.Random(seed)
    git(["init", "-q", "-b", "main", dest], cwd="/")
    p = subprocess.Popen(["git", "fast-import", "--quiet"], cwd=dest, stdin=subprocess.PIPE,
                         env=dict(os.environ, **GIT_ENV))
    w = p.stdin
    budget = max_mib << 20
    when = 1600000000
    paths = []

    def commit(msg, files):
        nonlocal when
        when += 3600
        w.write(f"commit refs/heads/main\ncommitter Bench <bench@example.invalid> {when} +0000\n".encode())
        m = msg.encode()
        w.write(b"data %d\n" % len(m) + m + b"\n")
        for path, data in files:
            w.write(b"M 100644 inline " + path.encode() + b"\ndata %d\n" % len(data) + data + b"\n")
        w.write(b"\n")

    for c in crates:
        files = []
        for d, dirs, names in os.walk(c):
            dirs.sort()
            for n in sorted(names):
                full = os.path.join(d, n)
                if os.path.islink(full) or not os.path.isfile(full):
                    continue
                size = os.path.getsize(full)
                if size > 1 << 20 or "\n" in full or '"' in full:
                    continue
                with open(full, "rb") as f:
                    data = f.read()
                files.append(("crates/" + os.path.relpath(full, src).split("/", 1)[1], data))
                budget -= size
        commit(f"add {os.path.basename(c)}", files)
        paths += [p for p, _ in files]
        if budget <= 0:
            break
    for i in range(edits):
        changed = []
        for path in rng.sample(paths, 3):
            changed.append((path, f"// edit {i} of {path}\n".encode() * rng.randint(1, 20)))
        commit(f"edit {i}", changed)
    w.close()
    if p.wait() != 0:
        raise SystemExit("git fast-import failed")
    git(["repack", "-a", "-d", "-q"], cwd=dest)


class GitDaemon:
    def __init__(self, b, base):
        self.port = net.free_port_block(1)
        self.proc = spawn(["git", "daemon", "--reuseaddr", f"--base-path={base}", "--export-all",
                           "--enable=receive-pack", f"--port={self.port}", "--listen=127.0.0.1", base],
                          b.path("git-daemon") + ".log")
        time.sleep(0.5)

    def url(self, name):
        return f"git://127.0.0.1:{self.port}/{name}"


def one_repo(b, a, name, source, res):
    env = dict(os.environ, **GIT_ENV)
    keys = b.path("keys")
    os.makedirs(keys, mode=0o700)
    bindir = os.path.dirname(os.path.abspath(a.cairn))
    if not os.path.exists(os.path.join(bindir, "git-remote-cairn")):
        raise SystemExit(f"no git-remote-cairn beside {a.cairn}: cargo build --release -p cairn-git")
    cenv = dict(env, PATH=bindir + ":" + os.environ["PATH"], CAIRN=a.cairn, XDG_CONFIG_HOME=keys)

    # The reference: a bare copy served by git daemon.
    base = b.path("served")
    os.makedirs(base)
    bare = os.path.join(base, f"{name}.git")
    git(["clone", "-q", "--bare", "--no-local", source, bare], cwd=b.work)
    git(["repack", "-a", "-d", "-q"], cwd=bare)
    packs = os.path.join(bare, "objects", "pack")
    pack = sum(os.path.getsize(os.path.join(packs, f)) for f in os.listdir(packs) if f.endswith(".pack"))
    objects = len(git(["rev-list", "--all", "--objects"], cwd=bare).splitlines())
    gd = GitDaemon(b, base)
    log(f"{name}: {objects} objects, git's pack {pack / 1e6:.1f} MB")

    # The publisher: daemon A, the key, the first push (not timed against anything).
    a_root, _ = b.init_root(f"{name}-a")
    da = b.daemon(a_root)
    helper_root, _ = b.init_root(f"{name}-dht")  # a second node, so A's records have a DHT peer
    dh = b.daemon(helper_root, [da.addr])
    b.wait_peers(a_root, [dh.peer])
    time.sleep(1)
    key = subprocess.run([a.cairn, "key", "gen", "profile"], env=cenv, check=True,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
    url = f"cairn://{key}/{name}"
    work = b.path(f"{name}-work")
    git(["clone", "-q", "--no-local", source, work], cwd=b.work)
    aenv = dict(cenv, CAIRN_ROOT=a_root)
    t = timed_git(["push", "-q", url, "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"], work, aenv)
    log(f"{name}: first push to cairn {t:.1f} s")

    clone = {"cairn": [], "git daemon": [], "file://": []}
    moved = []
    fetch = {"cairn": [], "git daemon": []}
    push = {"cairn": [], "git daemon": []}
    for run_i in range(a.runs):
        # git daemon and file://
        d = b.path("gd-clone")
        clone["git daemon"].append(timed_git(["clone", "-q", "--bare", gd.url(f"{name}.git"), d], b.work, env))
        f = b.path("file-clone")
        clone["file://"].append(timed_git(["clone", "-q", "--bare", "--no-local", "file://" + bare, f], b.work, env))
        shutil.rmtree(f)
        # cairn: a fresh node B knowing only A.
        b_root, _ = b.init_root(f"{name}-b{run_i}")
        db = b.daemon(b_root, [da.addr])
        b.wait_peers(b_root, [da.peer])
        benv = dict(cenv, CAIRN_ROOT=b_root)
        before = b.net_totals(b_root)
        c = b.path("cairn-clone")
        clone["cairn"].append(timed_git(["clone", "-q", "--bare", url, c], b.work, benv))
        after = b.net_totals(b_root)
        moved.append(after["bytes_received"] - before["bytes_received"])
        # One commit: pushed to both, fetched by both clones.
        path = next(p for p in git(["ls-files"], work).splitlines() if p)
        with open(os.path.join(work, path), "a") as fh:
            fh.write(f"one more line, run {run_i}\n")
        git(["commit", "-q", "-am", f"run {run_i}"], work, env)
        push["git daemon"].append(timed_git(["push", "-q", gd.url(f"{name}.git"), "HEAD:refs/heads/main"], work, env))
        push["cairn"].append(timed_git(["push", "-q", url, "HEAD:refs/heads/main"], work, aenv))
        fetch["git daemon"].append(timed_git(["fetch", "-q", "origin", "+refs/heads/*:refs/heads/*"], d, env))
        fetch["cairn"].append(timed_git(["fetch", "-q", "origin", "+refs/heads/*:refs/heads/*"], c, benv))
        head = git(["rev-parse", "HEAD"], work).strip()
        for clone_dir, what in [(d, "git daemon"), (c, "cairn")]:
            got = git(["rev-parse", "refs/heads/main"], clone_dir).strip()
            if got != head:
                raise SystemExit(f"{name}: the {what} clone's fetch did not bring the new commit")
        stop(db)
        shutil.rmtree(d)
        shutil.rmtree(c)
        if not a.keep:
            shutil.rmtree(b_root, ignore_errors=True)
    med = statistics.median
    res[name] = {
        "objects": objects, "pack_bytes": pack,
        "clone_s": {k: med(v) for k, v in clone.items()},
        "clone_bytes": med(moved),
        "fetch_s": {k: med(v) for k, v in fetch.items()},
        "push_s": {k: med(v) for k, v in push.items()},
    }
    stop(da)
    stop(dh)
    stop(gd.proc)


NS, VETH_ROOT, VETH_NS = "cairn-gitbench", "cgb0", "cgb1"
ROOT_IP, NS_IP = "10.77.0.1", "10.77.0.2"


def sh(*args):
    subprocess.run(list(args), check=True, stdin=subprocess.DEVNULL)


def ns_up(rate):
    ns_down()
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", VETH_ROOT, "type", "veth", "peer", "name", VETH_NS)
    sh("ip", "link", "set", VETH_NS, "netns", NS)
    sh("ip", "addr", "add", f"{ROOT_IP}/24", "dev", VETH_ROOT)
    sh("ip", "link", "set", VETH_ROOT, "up")
    sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/24", "dev", VETH_NS)
    sh("ip", "netns", "exec", NS, "ip", "link", "set", VETH_NS, "up")
    sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
    # What leaves the namespace (the publisher's uploads) is shaped.
    sh("ip", "netns", "exec", NS, "tc", "qdisc", "add", "dev", VETH_NS, "root", "tbf",
       "rate", rate, "burst", "256kbit", "latency", "100ms")


def ns_down():
    subprocess.run(["ip", "link", "del", VETH_ROOT], stderr=subprocess.DEVNULL)
    subprocess.run(["ip", "netns", "del", NS], stderr=subprocess.DEVNULL)


def ns_sent():
    """Bytes the namespace's side of the veth pair has sent."""
    out = subprocess.run(["ip", "netns", "exec", NS, "cat", f"/sys/class/net/{VETH_NS}/statistics/tx_bytes"],
                         check=True, stdout=subprocess.PIPE).stdout
    return int(out)


def all_at_once(cmds, timeout):
    """Starts every (args, cwd, env) at once; the seconds until the last ended."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for args, cwd, env in cmds]
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(p.args)} failed:\n{err.decode(errors='replace')}")
    return time.perf_counter() - t0


def swarm_clone(b, a, name, source, res, clones=8):
    env = dict(os.environ, **GIT_ENV)
    bindir = os.path.dirname(os.path.abspath(a.cairn))
    keys = b.path("swarm-keys")
    os.makedirs(keys, mode=0o700)
    cenv = dict(env, PATH=bindir + ":" + os.environ["PATH"], CAIRN=a.cairn, XDG_CONFIG_HOME=keys)
    ns_up(a.swarm_rate)
    try:
        base = b.path("swarm-served")
        os.makedirs(base)
        bare = os.path.join(base, f"{name}.git")
        git(["clone", "-q", "--bare", "--no-local", source, bare], cwd=b.work)
        git(["repack", "-a", "-d", "-q"], cwd=bare)
        packs = os.path.join(bare, "objects", "pack")
        pack = sum(os.path.getsize(os.path.join(packs, f)) for f in os.listdir(packs) if f.endswith(".pack"))
        port = net.free_port_block(1)
        gd = spawn(["ip", "netns", "exec", NS, "git", "daemon", "--reuseaddr", f"--base-path={base}",
                    "--export-all", f"--port={port}", f"--listen={NS_IP}", base], b.path("swarm-gd") + ".log")
        time.sleep(0.5)
        before = ns_sent()
        cmds = [(["git", "clone", "-q", "--bare", f"git://{NS_IP}:{port}/{name}.git", b.path("gd-swarm")],
                 b.work, env) for _ in range(clones)]
        gd_time = all_at_once(cmds, 3600)
        gd_sent = ns_sent() - before
        stop(gd)
        log(f"swarm: {clones} git clones from git daemon in {gd_time:.1f} s, it sent {gd_sent / pack:.2f}x the pack")

        # The publisher in the namespace; a DHT peer beside it so its records have a home.
        pub_root, _ = b.init_root("swarm-pub")
        lf = pub_root + ".daemon.log"
        pub = spawn(["ip", "netns", "exec", NS, a.cairn, "--root", pub_root, "daemon", "--no-mount", "--no-mdns",
                     "--listen", f"/ip4/{NS_IP}/tcp/0"], lf)
        end = time.time() + 60
        while "daemon ready" not in net.tail(lf, 1000):
            if time.time() > end:
                raise SystemExit(f"publisher did not start:\n{net.tail(lf)}")
            time.sleep(0.05)
        ident = json.loads(b.c(pub_root, "swarm", "id", "--json"))
        pub_addr = next(x for x in ident["addrs"] if x.startswith(f"/ip4/{NS_IP}/tcp/"))
        if "/p2p/" not in pub_addr:
            pub_addr += "/p2p/" + ident["peer"]
        key = subprocess.run([a.cairn, "key", "gen", "profile"], env=cenv, check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
        url = f"cairn://{key}/{name}"
        cloners = []
        for i in range(clones):
            root, _ = b.init_root(f"swarm-c{i}")
            cloners.append(b.daemon(root, [pub_addr] + [c.addr for c in cloners]))
        everyone = [c.peer for c in cloners]
        for c in cloners:
            b.wait_peers(c.root, [ident["peer"]] + [p for p in everyone if p != c.peer])
        time.sleep(1)
        work = b.path("swarm-work")
        git(["clone", "-q", "--no-local", source, work], cwd=b.work)
        git(["push", "-q", url, "refs/heads/*:refs/heads/*", "refs/tags/*:refs/tags/*"], work,
            dict(cenv, CAIRN_ROOT=pub_root))
        before_veth = ns_sent()
        before_pub = b.net_totals(pub_root)["bytes_sent"]
        cmds = [(["git", "clone", "-q", "--bare", url, b.path("cairn-swarm")], b.work,
                 dict(cenv, CAIRN_ROOT=c.root)) for c in cloners]
        cairn_time = all_at_once(cmds, 3600)
        cairn_sent = ns_sent() - before_veth
        pub_blocks = b.net_totals(pub_root)["bytes_sent"] - before_pub
        log(f"swarm: {clones} cairn clones in {cairn_time:.1f} s, the publisher sent {cairn_sent / pack:.2f}x "
            f"the pack ({pub_blocks / pack:.2f}x in blocks)")
        for c in cloners:
            stop(c)
        stop(pub)
        res[f"{name} swarm"] = {"pack_bytes": pack, "rate": a.swarm_rate, "clones": clones,
                                "git_daemon_s": gd_time, "git_daemon_sent": gd_sent,
                                "cairn_s": cairn_time, "cairn_sent": cairn_sent, "cairn_block_bytes": pub_blocks}
    finally:
        ns_down()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cairn", default=os.path.join(os.environ.get(
        "CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cairn-target")), "release", "cairn"))
    ap.add_argument("--repos", default="self,medium")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-mib", type=int, default=300)
    ap.add_argument("--edits", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--swarm", action="store_true")
    ap.add_argument("--swarm-rate", default="100mbit")
    ap.add_argument("--work")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--interop", default=os.path.expanduser("~/.cache/cairn-interop"))
    a = ap.parse_args()
    a.work = a.work or tempfile.mkdtemp(prefix="cairn-git-bench-")
    b = Bench(a)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    res = {}
    try:
        for name in a.repos.split(","):
            if name == "self":
                src = b.path("self.git")
                git(["clone", "-q", "--mirror", "--no-local", HERE, src], cwd=b.work)
            elif name == "medium":
                src = b.path("medium")
                t = time.time()
                medium_repo(src, a.max_mib, a.edits, a.seed)
                log(f"medium: generated in {time.time() - t:.0f} s")
            else:
                raise SystemExit(f"unknown repo {name}")
            one_repo(b, a, name, src, res)
            if a.swarm and name == "medium":
                swarm_clone(b, a, name, src, res)
    finally:
        for p in net.PROCS:
            stop(p)
        if not a.keep:
            shutil.rmtree(a.work, ignore_errors=True)
    print(json.dumps(res, indent=1))
    print()
    print("| repo | objects | pack | clone cairn / git daemon / file:// | ratio | bytes / pack "
          "| fetch cairn / git daemon | ratio | push cairn / git daemon | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in res.items():
        if "swarm" in name:
            continue
        c, f, p = r["clone_s"], r["fetch_s"], r["push_s"]
        print(f"| {name} | {r['objects']} | {r['pack_bytes'] / 1e6:.1f} MB "
              f"| {c['cairn']:.2f} / {c['git daemon']:.2f} / {c['file://']:.2f} s "
              f"| {c['cairn'] / c['git daemon']:.2f}x | {r['clone_bytes'] / r['pack_bytes']:.2f}x "
              f"| {f['cairn']:.3f} / {f['git daemon']:.3f} s | {f['cairn'] / f['git daemon']:.1f}x "
              f"| {p['cairn']:.3f} / {p['git daemon']:.3f} s | {p['cairn'] / p['git daemon']:.1f}x |")


    for name, r in res.items():
        if "swarm" not in name:
            continue
        print()
        print(f"{name}: {r['clones']} clones at once, publisher behind {r['rate']}: "
              f"cairn {r['cairn_s']:.1f} s / git daemon {r['git_daemon_s']:.1f} s = "
              f"{r['cairn_s'] / r['git_daemon_s']:.2f}x; the publisher sent {r['cairn_sent'] / r['pack_bytes']:.2f}x "
              f"the pack (git daemon {r['git_daemon_sent'] / r['pack_bytes']:.2f}x)")


if __name__ == "__main__":
    main()
