#!/usr/bin/env python3
"""cairn first-run benchmark: starting real apps that are not on the machine yet, against ext4 cold.

Runs as root (drops caches, mounts). Three apps are built once at set-up and kept in
--work DIR (reruns reuse them):
  pip        a venv of /usr/bin/python3 (`python3 -m venv`, pip from ensurepip; bin/python is a
             symlink to the system interpreter, the rest is in the tree); the command is
             TREE/bin/python -I -m pip --version, checked to say "pip X from TREE/lib/...";
  wheels     a venv with the wheels of `pip download requests packaging idna` (downloaded from
             PyPI once) installed; the command is TREE/bin/python -I -c "import requests,
             packaging.version, idna", checked to import each from under TREE;
  many-libs  a gcc-built program linked against 200 shared libraries of its own (as in
             bench/mount.py), found through an RPATH into the placeholder prefix
             MNT/app/<placeholder>/lib; checked to exit 0 (it checks its 200 calls).
Each app is added on node A (`cairn add -Q --app --preserve-mtime`: with mtimes, as
bench/mount.py does, or Python would find every .pyc stale) and timed, once per case, from
the start of the command to its exit:
  ext4       reference: the tree in an ext4 image (mke2fs -d) on a loop device, mounted read-only
             after `echo 3 > /proc/sys/vm/drop_caches` (image not in the page cache: cold);
  own        A's own mount (`cairn --root A mount MNT`, local blocks only), caches dropped first;
  loopback   an empty node B (a new root for every run): `cairn --root B daemon MNT` whose only
             bootstrap peer is A's daemon on 127.0.0.1; the app runs from MNT/app/<cid>/, every
             block fetched from A as it is read; caches dropped before B starts;
  latency    the same, B reaching A only through a TCP proxy in this script that holds every
             chunk it reads for --latency-ms (10) before writing it on, in each direction: 20 ms
             of round trip.
Every cairn case mounts at the same MNT (WORK/mnt), so the many-libs RPATH names the mount of
the node that runs it, whichever that is; for ext4, MNT/app/<placeholder> is a symlink to the
image's mountpoint (MNT is a plain directory then).
The proxy: per connection and direction, a reader thread stamps each chunk it reads with
(now + delay) and queues it; a writer thread sends each chunk when its time comes, in order
(chunks already due go out together). The reader never waits for the writer, so a stream
of chunks is delayed, not slowed. Its round trip (1-byte TCP echoes) and throughput are
measured and printed before the latency runs.
No direct path from B to A in the latency case: both daemons run with mdns = false and
dht = false (R/config.toml, and --no-mdns --no-dht), listen on 127.0.0.1 TCP only (no QUIC),
and B's only bootstrap address is the proxy's, /ip4/127.0.0.1/tcp/PROXY/p2p/<A>. B still
learns A's listen address through identify (`cairn swarm peers` lists it after the proxy's),
but a cairn node dials only its bootstrap peers, mDNS finds and DHT providers, so it never
dials it; A, with no bootstrap and no DHT, dials nobody. Each run checks this: B's
established TCP connections (ss, by B's pid) must all go to the proxy's port, and the proxy
must have carried at least the bytes B received. Nothing announces on the LAN.
Prints a Markdown table, one row per app and case: cairn's time, ext4's, and the ratio
ext4 / cairn (higher is better; 1.00x is as fast as ext4), with cairn's slowdown beside it.
One run each, no medians: on a busy 2-core machine, expect noise.

Usage: bench/firstrun.py [--cairn PATH] [--work DIR] [--only pip,wheels,many-libs]
                         [--cases ext4,own,loopback,latency] [--latency-ms 10] [--timeout 300]
                         [--keep]
"""
import argparse
import collections
import json
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

APPS = ["pip", "wheels", "many-libs"]
CASES = ["ext4", "own", "loopback", "latency"]
FUSE_MAGIC = 0x65735546
LOOP = "/ip4/127.0.0.1/tcp/0"
PY = "/usr/bin/python3"

PROCS = []  # long-running processes started, stopped in main's finally


def log(msg):
    print(f"firstrun.py: {msg}", file=sys.stderr, flush=True)


def sh(*a, **kw):
    return subprocess.run(a, check=True, **kw)


def out(*a, **kw):
    return subprocess.run(a, check=True, capture_output=True, text=True, **kw).stdout


def drop_caches():
    sh("sync")
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def is_fuse(p):
    try:
        r = subprocess.run(["stat", "-f", "-c", "%t", p], capture_output=True, text=True)
        return int(r.stdout.strip(), 16) == FUSE_MAGIC
    except ValueError:
        return False


def is_mounted(mp):
    mp = os.path.realpath(mp)
    with open("/proc/self/mounts") as f:
        return any(l.split()[1] == mp for l in f)


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def spawn(args, logfile):
    lf = open(logfile, "ab")
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=lf, stderr=lf)
    lf.close()
    p.logfile = logfile
    PROCS.append(p)
    return p


def stop(p, grace=30):
    """SIGTERM, then SIGKILL after `grace` seconds; this process only, by its pid."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
    if p in PROCS:
        PROCS.remove(p)


def unmount(mp):
    if is_mounted(mp):
        if subprocess.run(["fusermount3", "-u", mp], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mp])


def fmt(t):
    if t is None:
        return "-"
    return f"{t * 1000:.0f} ms" if t < 10 else f"{t:.1f} s"


# --- the delaying proxy ---

class DelayProxy:
    """127.0.0.1:self.port -> target, every chunk held `delay` seconds in each direction."""

    def __init__(self, target, delay):
        self.target, self.delay = target, delay
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.bytes = [0, 0]  # to the target, from the target
        self.accepted = 0
        self.lock = threading.Lock()
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=10)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                if self.closed:
                    c.close()
                    u.close()
                    return
                self.accepted += 1
                self.socks += [c, u]
            pair = {"left": 2}
            self._pipe(c, u, 0, pair)
            self._pipe(u, c, 1, pair)

    def _finish(self, pair, a, b):
        with self.lock:
            pair["left"] -= 1
            done = pair["left"] <= 0
        if done:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def _pipe(self, src, dst, idx, pair):
        q = collections.deque()
        cv = threading.Condition()

        def reader():
            while True:
                try:
                    b = src.recv(1 << 16)
                except OSError:
                    b = b""
                due = time.monotonic() + self.delay
                with cv:
                    q.append((due, b))
                    cv.notify()
                if not b:
                    return

        def writer():
            while True:
                with cv:
                    while not q:
                        cv.wait()
                    due, b = q.popleft()
                d = due - time.monotonic()
                if d > 0:
                    time.sleep(d)
                # Whatever else is due by now goes out in the same write.
                eof = not b
                chunks = [b] if b else []
                with cv:
                    now = time.monotonic()
                    while not eof and q and q[0][0] <= now:
                        _, nb = q.popleft()
                        if nb:
                            chunks.append(nb)
                        else:
                            eof = True
                try:
                    if chunks:
                        data = b"".join(chunks)
                        dst.sendall(data)
                        with self.lock:
                            self.bytes[idx] += len(data)
                    if eof:
                        dst.shutdown(socket.SHUT_WR)
                        self._finish(pair, src, dst)
                        return
                except OSError:
                    # The far side is gone: close both, which ends the other direction too.
                    for s in (src, dst):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                    self._finish(pair, src, dst)
                    return

        threading.Thread(target=reader, daemon=True).start()
        threading.Thread(target=writer, daemon=True).start()

    def close(self):
        with self.lock:
            self.closed = True
            socks = list(self.socks)
        try:
            self.lsock.close()
        except OSError:
            pass
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


def check_proxy(delay):
    """Round trip (1-byte echoes) and throughput (32 MiB one way) through a DelayProxy of
    `delay`, against the same without it."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return

            def one(c):
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                mode = c.recv(1)
                if mode == b"e":  # echo
                    while b := c.recv(1 << 16):
                        c.sendall(b)
                elif mode == b"s":  # sink, one byte back at EOF
                    while c.recv(1 << 20):
                        pass
                    c.sendall(b"k")
                c.close()
            threading.Thread(target=one, args=(c,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    proxy = DelayProxy(srv.getsockname(), delay)
    res = {}
    try:
        for name, port in (("direct", srv.getsockname()[1]), ("proxy", proxy.port)):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(b"e")
            rtts = []
            for _ in range(10):
                t = time.perf_counter()
                s.sendall(b"x")
                if s.recv(1) != b"x":
                    raise SystemExit("proxy check: echo failed")
                rtts.append(time.perf_counter() - t)
            s.close()
            n = 32 << 20
            s = socket.create_connection(("127.0.0.1", port))
            buf = os.urandom(1 << 20)
            t = time.perf_counter()
            s.sendall(b"s")
            for _ in range(n >> 20):
                s.sendall(buf)
            s.shutdown(socket.SHUT_WR)
            if s.recv(1) != b"k":
                raise SystemExit("proxy check: sink failed")
            secs = time.perf_counter() - t
            s.close()
            res[name] = (statistics.median(rtts), n / secs / 1e6, secs)
    finally:
        proxy.close()
        srv.close()
    return res


# --- the apps ---

class App:
    def __init__(self, name, tree, argv, check):
        self.name, self.tree = name, tree
        self.argv = argv    # base -> argv
        self.check = check  # (base, returncode, stdout) -> error text or None
        self.cid = None


def build_apps(a, only, placeholder, mnt):
    apps_dir = os.path.join(a.work, "apps")
    os.makedirs(apps_dir, exist_ok=True)
    apps = {}

    def fresh(name):
        """The tree's path, removed with its image if it was never finished."""
        tree = os.path.join(apps_dir, name)
        if not os.path.exists(tree + ".ready"):
            shutil.rmtree(tree, ignore_errors=True)
            for x in (tree + ".ext4",):
                if os.path.exists(x):
                    os.unlink(x)
        return tree

    if "pip" in only:
        tree = fresh("pip")
        if not os.path.exists(tree + ".ready"):
            log(f"set-up: {PY} -m venv {tree}")
            sh(PY, "-m", "venv", tree)
            open(tree + ".ready", "w").close()

        def pip_check(base, rc, stdout):
            if rc != 0 or not stdout.startswith("pip ") or f" from {base}/lib/" not in stdout:
                return f"exit {rc}, output {stdout.strip()[:300]!r}: want 'pip X from {base}/lib/...'"
            return None
        apps["pip"] = App("pip", tree, lambda base: [os.path.join(base, "bin/python"), "-I", "-m", "pip", "--version"],
                          pip_check)

    if "wheels" in only:
        tree = fresh("wheels")
        if not os.path.exists(tree + ".ready"):
            house = os.path.join(apps_dir, "wheelhouse")
            if not os.path.exists(house + ".ready"):
                shutil.rmtree(house, ignore_errors=True)
                tool = os.path.join(apps_dir, "pip-tool")
                shutil.rmtree(tool, ignore_errors=True)
                sh(PY, "-m", "venv", tool)
                log("set-up: pip download requests packaging idna (from PyPI)")
                sh(os.path.join(tool, "bin/python"), "-m", "pip", "download", "--disable-pip-version-check",
                   "-q", "-d", house, "requests", "packaging", "idna")
                shutil.rmtree(tool, ignore_errors=True)
                open(house + ".ready", "w").close()
            log(f"set-up: a venv with {', '.join(sorted(os.listdir(house)))}")
            sh(PY, "-m", "venv", tree)
            sh(os.path.join(tree, "bin/python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
               "--no-index", "--find-links", house, "requests", "packaging", "idna")
            open(tree + ".ready", "w").close()
        prog = "import requests, packaging.version, idna; print(requests.__file__, packaging.version.__file__, idna.__file__)"

        def wheels_check(base, rc, stdout):
            files = stdout.split()
            if rc != 0 or len(files) != 3 or not all(f.startswith(base + "/lib/") for f in files):
                return f"exit {rc}, output {stdout.strip()[:300]!r}: want 3 modules under {base}/lib/"
            return None
        apps["wheels"] = App("wheels", tree, lambda base: [os.path.join(base, "bin/python"), "-I", "-c", prog],
                             wheels_check)

    if "many-libs" in only:
        tree = fresh("many-libs")
        prefix = os.path.join(mnt, "app", placeholder)
        stamp = tree + ".ready"
        if os.path.exists(stamp) and open(stamp).read() != prefix:
            os.unlink(stamp)
            tree = fresh("many-libs")
        if not os.path.exists(stamp):
            log(f"set-up: 200 shared libraries and a program, RPATH {prefix}/lib")
            src = os.path.join(apps_dir, "many-libs-src")
            shutil.rmtree(src, ignore_errors=True)
            os.makedirs(src)
            os.makedirs(os.path.join(tree, "lib"))
            os.makedirs(os.path.join(tree, "bin"))
            for i in range(200):
                c = os.path.join(src, f"l{i}.c")
                with open(c, "w") as f:
                    f.write(f"int f{i}(int x) {{ return x + {i}; }}\n")
                sh("gcc", "-shared", "-fPIC", "-O1", "-o", os.path.join(tree, "lib", f"libl{i}.so"), c)
            with open(os.path.join(src, "main.c"), "w") as f:
                f.write("".join(f"int f{i}(int);\n" for i in range(200)))
                f.write("int main(void) { int s = 0;\n")
                f.write("".join(f"  s = f{i}(s);\n" for i in range(200)))
                f.write("  return s == 19900 ? 0 : 1; }\n")
            sh("gcc", "-O1", "-o", os.path.join(tree, "bin/many"), os.path.join(src, "main.c"),
               "-L", os.path.join(tree, "lib"), *[f"-ll{i}" for i in range(200)],
               f"-Wl,-rpath,{prefix}/lib", "-Wl,--disable-new-dtags")
            shutil.rmtree(src)
            with open(stamp, "w") as f:
                f.write(prefix)

        def many_check(base, rc, stdout):
            return None if rc == 0 else f"exit {rc} (0 when all 200 libraries loaded and answered)"
        apps["many-libs"] = App("many-libs", tree, lambda base: [os.path.join(base, "bin/many")], many_check)
        apps["many-libs"].prefix = prefix

    for name in only:
        app = apps[name]
        image = app.tree + ".ext4"
        if not os.path.exists(image):
            du = int(out("du", "-sk", app.tree).split()[0]) << 10
            files = sum(len(fs) + len(ds) for _, ds, fs in os.walk(app.tree))
            with open(image, "wb") as f:
                f.truncate(max(64 << 20, du * 3))
            sh("mke2fs", "-q", "-F", "-t", "ext4", "-N", str(files * 2 + 1024), "-d", app.tree, image)
    return apps


def run_app(app, base, timeout, logfile):
    """Runs the app from `base`: (seconds or None on timeout, error or None, first line)."""
    argv = app.argv(base)
    with open(logfile, "ab") as lf:
        lf.write(f"$ {shlex.join(argv)}\n".encode())
        lf.flush()
        t = time.perf_counter()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=lf, cwd="/")
        try:
            stdout, _ = p.communicate(timeout=timeout)
        except BaseException as e:  # a timeout, or SIGTERM/Ctrl-C: the app goes too
            p.kill()
            if not isinstance(e, subprocess.TimeoutExpired):
                raise
            try:
                p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            return None, f"timeout after {timeout} s", ""
        secs = time.perf_counter() - t
    stdout = stdout.decode(errors="replace")
    err = app.check(base, p.returncode, stdout)
    return secs, err, stdout.strip().splitlines()[0] if stdout.strip() else ""


# --- the run ---

class Bench:
    def __init__(self, a, apps, run_dir, mnt):
        self.a, self.apps, self.run, self.mnt = a, apps, run_dir, mnt
        self.cairn = a.cairn
        self.logs = os.path.join(run_dir, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.ext4mnt = os.path.join(run_dir, "ext4mnt")
        self.root_a = os.path.join(run_dir, "a")
        self.root_b = os.path.join(run_dir, "b")
        self.results = {}  # (app, case) -> dict(secs, err, first, note)
        self.notes = []
        self.daemon_a = None
        self.proxy = None
        self.link = None

    def c(self, root, *args, timeout=120):
        lf = os.path.join(self.logs, "cairn.log")
        with open(lf, "ab") as e:
            r = subprocess.run([self.cairn, "--root", root, *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=e, timeout=timeout)
        if r.returncode != 0:
            raise SystemExit(f"exit {r.returncode}: cairn --root {root} {shlex.join(args)}\n{tail(lf)}")
        return r.stdout.decode()

    def record(self, app, case, secs, err, first, note=""):
        self.results[(app.name, case)] = {"secs": secs, "err": err, "first": first, "note": note}
        state = "TIMEOUT" if secs is None else f"{fmt(secs)}"
        log(f"{app.name} / {case}: {state}{'; ERROR ' + err if err and secs is not None else ''}"
            f"{'; ' + note if note else ''}; output: {first[:160]!r}")

    def setup_a(self):
        shutil.rmtree(self.root_a, ignore_errors=True)
        self.c(self.root_a, "init")
        with open(os.path.join(self.root_a, "config.toml"), "w") as f:
            f.write(f'listen = ["{LOOP}"]\nmdns = false\ndht = false\n')
        for app in self.apps.values():
            app.cid = self.c(self.root_a, "add", "-Q", "--app", "--preserve-mtime", app.tree,
                             timeout=600).strip()
            log(f"node A: added {app.name} as {app.cid}")

    # (a) ext4
    def case_ext4(self, app):
        os.makedirs(self.ext4mnt, exist_ok=True)
        if getattr(app, "prefix", None):
            # The placeholder prefix, MNT/app/<placeholder>, names the image's mountpoint.
            os.makedirs(os.path.dirname(app.prefix), exist_ok=True)
            if os.path.lexists(app.prefix):
                os.remove(app.prefix)
            os.symlink(self.ext4mnt, app.prefix)
            self.link = app.prefix
        try:
            drop_caches()
            sh("mount", "-o", "loop,ro", app.tree + ".ext4", self.ext4mnt)
            try:
                secs, err, first = run_app(app, self.ext4mnt, self.a.timeout, self.logf(app, "ext4"))
            finally:
                sh("umount", self.ext4mnt)
        finally:
            if self.link:
                os.remove(self.link)
                self.link = None
        self.record(app, "ext4", secs, err, first)

    def logf(self, app, case):
        return os.path.join(self.logs, f"{app.name}-{case}.log")

    # (b) A's own mount
    def case_own(self, app):
        drop_caches()
        lf = self.logf(app, "own")
        p = spawn([self.cairn, "--root", self.root_a, "mount", self.mnt], lf)
        try:
            end = time.time() + 60
            while not is_fuse(self.mnt):
                if p.poll() is not None or time.time() > end:
                    raise SystemExit(f"cairn mount of A failed:\n{tail(lf)}")
                time.sleep(0.01)
            base = os.path.join(self.mnt, "app", app.cid)
            secs, err, first = run_app(app, base, self.a.timeout, lf)
        finally:
            stop(p)
            unmount(self.mnt)
        self.record(app, "own", secs, err, first)

    def start_a(self):
        lf = os.path.join(self.logs, "daemon-a.log")
        p = spawn([self.cairn, "--root", self.root_a, "daemon", "--no-mount", "--no-mdns", "--no-dht"], lf)
        end = time.time() + 120
        while "cairn: daemon ready" not in tail(lf, 1000):
            if p.poll() is not None or time.time() > end:
                raise SystemExit(f"node A's daemon did not become ready:\n{tail(lf)}")
            time.sleep(0.05)
        ident = json.loads(self.c(self.root_a, "swarm", "id", "--json"))
        addr = next((x for x in ident["addrs"] if x.startswith("/ip4/127.0.0.1/tcp/")), None)
        if addr is None:
            raise SystemExit(f"node A has no loopback TCP address: {ident}")
        p.peer = ident["peer"]
        p.tcp_port = int(addr.split("/")[4])
        p.addr = f"/ip4/127.0.0.1/tcp/{p.tcp_port}/p2p/{p.peer}"
        self.daemon_a = p
        log(f"node A: {p.addr} (listening on {', '.join(ident['addrs'])})")

    def tcp_peers(self, pid):
        """Remote (addr, port) of every established TCP connection of process `pid`."""
        r = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True)
        found = []
        for line in r.stdout.splitlines():
            if f"pid={pid}," not in line:
                continue
            f = line.split()
            # Recv-Q Send-Q Local:Port Peer:Port Process (no State column with a state filter)
            peer = f[3]
            host, _, port = peer.rpartition(":")
            found.append((host, int(port)))
        return found

    # (c), (d) an empty node B
    def case_net(self, app, case):
        a = self.daemon_a
        if case == "latency":
            boot, want_port = f"/ip4/127.0.0.1/tcp/{self.proxy.port}/p2p/{a.peer}", self.proxy.port
        else:
            boot, want_port = a.addr, a.tcp_port
        shutil.rmtree(self.root_b, ignore_errors=True)
        os.makedirs(self.root_b)
        with open(os.path.join(self.root_b, "config.toml"), "w") as f:
            f.write(f'listen = ["{LOOP}"]\nbootstrap = ["{boot}"]\nmdns = false\ndht = false\n')
        lf = self.logf(app, case)
        proxied_before = list(self.proxy.bytes) if self.proxy else [0, 0]
        drop_caches()
        p = spawn([self.cairn, "--root", self.root_b, "daemon", self.mnt, "--no-mdns", "--no-dht"], lf)
        try:
            end = time.time() + 120
            while "cairn: mounted" not in tail(lf, 1000) or not is_fuse(self.mnt):
                if p.poll() is not None or time.time() > end:
                    raise SystemExit(f"node B's daemon did not mount:\n{tail(lf)}")
                time.sleep(0.02)
            end = time.time() + 30
            while True:
                peers = json.loads(self.c(self.root_b, "swarm", "peers", "--json"))
                if any(x["peer"] == a.peer for x in peers):
                    break
                if time.time() > end:
                    raise SystemExit(f"node B did not connect to A through {boot} in 30 s:\n{tail(lf)}")
                time.sleep(0.05)
            base = os.path.join(self.mnt, "app", app.cid)
            secs, err, first = run_app(app, base, self.a.timeout, lf)
            # Where B's connections go, and what it fetched.
            conns = self.tcp_peers(p.pid)
            peers = json.loads(self.c(self.root_b, "swarm", "peers", "--json"))
            try:
                tot = json.loads(self.c(self.root_b, "stat", "--json"))["network"]["totals"]
            except (KeyError, SystemExit):
                tot = {}
        finally:
            stop(p)
            unmount(self.mnt)
        got = tot.get("bytes_received", 0)
        note = f"{tot.get('blocks_received', '?')} blocks, {got / 1e6:.1f} MB fetched"
        bad = [c for c in conns if c[1] != want_port]
        a_addrs = next((x["addrs"] for x in peers if x["peer"] == a.peer), [])
        with open(lf, "a") as f:
            f.write(f"B's TCP connections: {conns}\nB's view of A: {a_addrs}\n")
        if not conns or bad:
            err = (err + "; " if err else "") + f"B's TCP connections {conns}: want only port {want_port}"
        if case == "latency":
            proxied = self.proxy.bytes[1] - proxied_before[1]
            note += f", {proxied / 1e6:.1f} MB through the proxy"
            if proxied < got:
                err = (err + "; " if err else "") + f"the proxy carried {proxied} bytes to B, B received {got}"
        if not getattr(self, f"said_{case}", False):
            setattr(self, f"said_{case}", True)
            log(f"{case}: B connected to A only via {sorted(set(conns))}; B's swarm peers lists A at {a_addrs}")
        self.record(app, case, secs, err, first, note)
        shutil.rmtree(self.root_b, ignore_errors=True)

    def close(self):
        for p in list(reversed(PROCS)):
            stop(p)
        if self.proxy:
            self.proxy.close()
        unmount(self.mnt)
        if is_mounted(self.ext4mnt):
            subprocess.run(["umount", "-l", self.ext4mnt])
        if self.link and os.path.lexists(self.link):
            os.remove(self.link)


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cairn-target"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--cairn", default=os.path.join(target, "release/cairn"),
                    help="the cairn binary [default: $CARGO_TARGET_DIR/release/cairn or ~/.cache/cairn-target/release/cairn]")
    ap.add_argument("--work", default="/var/tmp/cairn-bench-firstrun",
                    help="apps (kept, reused), images, roots and logs [/var/tmp/cairn-bench-firstrun]")
    ap.add_argument("--only", default=",".join(APPS), help="comma-separated subset of: " + ",".join(APPS))
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ",".join(CASES))
    ap.add_argument("--latency-ms", type=float, default=10, help="delay the proxy adds in each direction [10]")
    ap.add_argument("--timeout", type=float, default=300, help="seconds before a run is killed and reported as a timeout [300]")
    ap.add_argument("--keep", action="store_true", help="keep WORK/run (roots of the last run, logs of every process)")
    a = ap.parse_args()
    only = [x.strip() for x in a.only.split(",") if x.strip()]
    cases = [x.strip() for x in a.cases.split(",") if x.strip()]
    if bad := [x for x in only if x not in APPS]:
        ap.error(f"--only: unknown {', '.join(bad)} (choose from {', '.join(APPS)})")
    if bad := [x for x in cases if x not in CASES]:
        ap.error(f"--cases: unknown {', '.join(bad)} (choose from {', '.join(CASES)})")
    only = [x for x in APPS if x in only]
    cases = [x for x in CASES if x in cases]
    a.cairn = os.path.abspath(os.path.expanduser(a.cairn))
    a.work = os.path.abspath(os.path.expanduser(a.work))
    if not os.access(a.cairn, os.X_OK):
        raise SystemExit(f"firstrun.py: no cairn binary at {a.cairn}: build one with `cargo build --release -p cairn` or pass --cairn PATH")
    if os.geteuid() != 0:
        raise SystemExit("firstrun.py: run as root (drops caches, mounts)")
    print("$ " + shlex.join(["python3", "bench/firstrun.py", *sys.argv[1:]]) + "\n", flush=True)
    uring = "/sys/module/fuse/parameters/enable_uring"
    if os.path.exists(uring):
        with open(uring, "w") as f:
            f.write("1\n")

    os.makedirs(a.work, exist_ok=True)
    mnt = os.path.join(a.work, "mnt")
    run_dir = os.path.join(a.work, "run")
    unmount(mnt)
    if is_mounted(os.path.join(run_dir, "ext4mnt")):
        subprocess.run(["umount", "-l", os.path.join(run_dir, "ext4mnt")])
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    os.makedirs(mnt, exist_ok=True)
    placeholder = out(a.cairn, "--root", os.path.join(run_dir, "a"), "app", "placeholder").strip()
    apps = build_apps(a, only, placeholder, mnt)
    for app in apps.values():
        # The set-up check: each app works from its source tree, and reports that tree.
        link = getattr(app, "prefix", None)
        if link:  # (its RPATH, through the placeholder prefix, to the tree for this check)
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(app.tree, link)
        try:
            secs, err, first = run_app(app, app.tree, 120, os.path.join(run_dir, "setup.log"))
        finally:
            if link:
                os.remove(link)
        if err:
            raise SystemExit(f"set-up: {app.name} does not work from {app.tree}: {err}")
        log(f"set-up: {app.name} from its tree: {first[:160]!r}")

    def on_term(*_):
        log("SIGTERM: stopping everything started")
        sys.exit(143)

    signal.signal(signal.SIGTERM, on_term)
    b = Bench(a, apps, run_dir, mnt)
    t_start = time.time()
    proxy_check = None
    try:
        b.setup_a()
        for app in apps.values():
            if "ext4" in cases:
                b.case_ext4(app)
            if "own" in cases:
                b.case_own(app)
        if "loopback" in cases or "latency" in cases:
            b.start_a()
            if "loopback" in cases:
                for app in apps.values():
                    b.case_net(app, "loopback")
            if "latency" in cases:
                d = a.latency_ms / 1000
                proxy_check = check_proxy(d)
                pr, di = proxy_check["proxy"], proxy_check["direct"]
                log(f"proxy check: 1-byte echo round trip {pr[0] * 1000:.1f} ms through the proxy "
                    f"(direct {di[0] * 1000:.3f} ms); 32 MiB one way {pr[2]:.3f} s = {pr[1]:.0f} MB/s "
                    f"(direct {di[1]:.0f} MB/s)")
                b.proxy = DelayProxy(("127.0.0.1", b.daemon_a.tcp_port), d)
                log(f"proxy: 127.0.0.1:{b.proxy.port} -> A's 127.0.0.1:{b.daemon_a.tcp_port}, {a.latency_ms:g} ms each way")
                for app in apps.values():
                    b.case_net(app, "latency")
    finally:
        b.close()
        if a.keep:
            log(f"kept {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)

    debug = "/debug/" in a.cairn
    rtt = 2 * a.latency_ms
    print(f"cairn {a.cairn}{' (DEBUG BUILD: not representative)' if debug else ''}; {os.cpu_count()} cores; "
          f"kernel {os.uname().release}; one run each; {time.time() - t_start:.0f} s in all\n")
    labels = {
        "own": "own mount, cold (caches dropped, blocks local)",
        "loopback": "empty node B, blocks fetched from A over loopback",
        "latency": f"empty node B, blocks fetched from A through a {rtt:g} ms round-trip proxy",
    }
    print("| measurement | cairn | reference | ratio (ext4 / cairn) |")
    print("|---|---|---|---|")
    shown = [c for c in cases if c != "ext4"] or ["ext4"]
    for app in apps.values():
        ref = b.results.get((app.name, "ext4"))
        rs = ref["secs"] if ref and not ref["err"] else None
        for case in shown:
            r = b.results.get((app.name, case))
            if r is None:
                continue
            if case == "ext4":
                print(f"| {app.name}: ext4 cold (loop image mounted after dropping caches) | - | "
                      f"ext4 cold {fmt(rs) if rs else 'FAILED: see notes'} | - |")
                continue
            if r["secs"] is None:
                val, ratio = f"timeout (> {a.timeout:g} s)", "-"
            else:
                val = fmt(r["secs"]) + (" (FAILED: see notes)" if r["err"] else "")
                slow = r["secs"] / rs if rs else 0
                ratio = (f"{rs / r['secs']:.3f}x (cairn {slow:.{0 if slow >= 100 else 1}f}x the time)"
                         if rs and not r["err"] else "-")
            refcell = f"ext4 cold {fmt(rs)}" if rs else ("ext4 not run" if not ref else "ext4 failed")
            print(f"| {app.name}: {labels[case]} | {val} | {refcell} | {ratio} |")
    print()
    apps_desc = {
        "pip": "`TREE/bin/python -I -m pip --version` from a venv of /usr/bin/python3",
        "wheels": "`TREE/bin/python -I -c 'import requests, packaging.version, idna'` from a venv with those wheels",
        "many-libs": "`TREE/bin/many`, linked against 200 shared libraries in TREE/lib (RPATH through the placeholder)",
    }
    for app in apps.values():
        sz = int(out("du", "-sk", app.tree).split()[0])
        nfiles = sum(len(fs) for _, _, fs in os.walk(app.tree))
        print(f"- {app.name}: {apps_desc[app.name]}; {nfiles} files, {sz / 1024:.1f} MiB; {app.cid}")
    for (name, case), r in b.results.items():
        extra = []
        if r["note"]:
            extra.append(r["note"])
        if r["err"]:
            extra.append("ERROR: " + r["err"])
        if extra:
            print(f"- {name} / {case}: " + "; ".join(extra))
    if proxy_check:
        pr, di = proxy_check["proxy"], proxy_check["direct"]
        print(f"- proxy ({a.latency_ms:g} ms each way): 1-byte TCP echo round trip {pr[0] * 1000:.1f} ms "
              f"(direct {di[0] * 1000:.3f} ms); 32 MiB one way in {pr[2]:.3f} s, {pr[1]:.0f} MB/s (direct {di[1]:.0f} MB/s)")
    if "loopback" in cases or "latency" in cases:
        print("- B: a new root and daemon per run (mdns and dht off, its only bootstrap A's address or the proxy's), "
              "caches dropped before it starts, timed once it is connected to A and mounted; "
              "each run checked that all of B's TCP connections go to that one port")
    print("- times run from starting the command to its exit, output checked; cairn cases mount at one "
          f"MNT ({mnt}), the app run from MNT/app/<cid>/")


if __name__ == "__main__":
    main()
