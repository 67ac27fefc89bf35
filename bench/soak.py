#!/usr/bin/env python3
"""cairn soak: four daemons under load for a long while, and whether anything grows.

Four daemons with mounts on 127.0.0.1 (DHT on, mDNS off), each bootstrapped to the ones
started before it. Daemon 0 holds the content (--files files of --file-mib MiB and a tree
of 500 small files) and never stops. For --minutes minutes:
  readers    on daemons 1-3, one thread each reads a random file through the mount, whole,
             and checks its sha256; an EIO is counted (daemon 0 is always up and holds
             everything, so no read should fail);
  gc         every 60 s, `cairn gc` on daemons 1-3 (what they fetched is cache: collected,
             then fetched again);
  churn      daemon 3 stops (SIGTERM) and starts again every 3 minutes: peers leave, come
             back, and are told our wantlist anew;
  hostile    tests/support/hostile.mjs (JavaScript, on Helia's libp2p) attacks daemon 0 in
             60 s rounds under new identities: wrong blocks, garbage, floods of wants;
  sampling   every 10 s, the resident memory, open descriptors, threads and tokio tasks
             (`cairn stat --json`) of daemons 0-2.
Prints a table of each figure at the start of the measured window (after --warmup minutes),
at the end, and its least-squares slope per hour over the window; read errors; and writes
every sample to --out (JSON). Goal: slopes near zero, no EIO.

Usage: bench/soak.py [--cairn PATH] [--minutes 30] [--warmup 5] [--files 16] [--file-mib 8]
                     [--out soak.json] [--work DIR] [--keep]
Needs root (it mounts) and the interop Helia install (bash scripts/interop.sh).
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

PROCS = []


def log(msg):
    print(f"soak.py: {msg}", file=sys.stderr, flush=True)


class Daemon:
    def __init__(self, cairn, root, n, bootstrap, logdir):
        self.cairn, self.root, self.n, self.bootstrap = cairn, root, n, bootstrap
        self.log = os.path.join(logdir, f"daemon{n}.log")
        self.proc = None
        self.addr = None

    def start(self):
        args = [self.cairn, "--root", self.root, "daemon", "--no-mdns",
                "--listen", "/ip4/127.0.0.1/tcp/0", "--fetch-timeout", "20"]
        for b in self.bootstrap:
            args += ["--bootstrap", b]
        lf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=lf, stderr=subprocess.PIPE,
                                     env={**os.environ, "RUST_LOG": "warn"})
        lf.close()
        PROCS.append(self.proc)
        deadline = time.time() + 60
        for line in self.proc.stderr:
            line = line.decode(errors="replace")
            with open(self.log, "a") as f:
                f.write(line)
            if line.strip().startswith("/ip4/") and self.addr is None:
                self.addr = line.strip()
            if "cairn: mounted" in line:
                break
            if time.time() > deadline:
                raise SystemExit(f"daemon {self.n} did not mount")
        # Keep draining its stderr into the log.
        def drain(p, path):
            with open(path, "ab") as f:
                for l in p.stderr:
                    f.write(l)
        threading.Thread(target=drain, args=(self.proc, self.log), daemon=True).start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cli(self, *args, timeout=120):
        r = subprocess.run([self.cairn, "--root", self.root, *args], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"cairn {' '.join(args)}: {r.stderr.decode(errors='replace')[-500:]}")
        return r.stdout.decode()

    def sample(self):
        pid = self.proc.pid
        with open(f"/proc/{pid}/status") as f:
            st = dict(l.split(":", 1) for l in f if ":" in l)
        rss = int(st["VmRSS"].split()[0])
        threads = int(st["Threads"])
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        tasks = None
        try:
            tasks = json.loads(self.cli("stat", "--json", timeout=20))["network"].get("tasks")
        except Exception as e:  # noqa: BLE001 - a sample that failed is reported, not fatal
            log(f"daemon {self.n}: stat failed: {e}")
        return {"rss_kib": rss, "fds": fds, "threads": threads, "tasks": tasks}


def slope_per_hour(points):
    """Least-squares slope of (t seconds, y) in y per hour."""
    pts = [(t, y) for t, y in points if y is not None]
    if len(pts) < 3:
        return float("nan")
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    my = sum(y for _, y in pts) / n
    var = sum((t - mt) ** 2 for t, _ in pts)
    if var == 0:
        return 0.0
    return sum((t - mt) * (y - my) for t, y in pts) / var * 3600


def main():
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/cairn-target"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    ap.add_argument("--cairn", default=os.path.join(target, "release/cairn"))
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=5, help="minutes before the measured window [5]")
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--file-mib", type=int, default=8)
    ap.add_argument("--out", default="soak.json")
    ap.add_argument("--work", default="/var/tmp")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--interop", default=os.environ.get("CAIRN_INTEROP", os.path.expanduser("~/.cache/cairn-interop")))
    a = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("soak.py: needs root (the daemons mount)")
    cairn = os.path.abspath(a.cairn)
    helia = os.path.join(a.interop, "helia")
    if not os.path.isdir(os.path.join(helia, "node_modules")):
        raise SystemExit(f"soak.py: no Helia in {helia}: run bash scripts/interop.sh")
    here = os.path.dirname(os.path.abspath(__file__))
    shutil.copy(os.path.join(here, "../tests/support/hostile.mjs"), os.path.join(helia, "hostile.mjs"))
    print("$ " + " ".join(["python3", "bench/soak.py", *sys.argv[1:]]) + "\n", flush=True)

    work = tempfile.mkdtemp(prefix="cairn-soak-", dir=a.work)
    stop = threading.Event()
    daemons = []
    try:
        roots = [os.path.join(work, f"r{i}") for i in range(4)]
        for r in roots:
            subprocess.run([cairn, "--root", r, "init"], check=True, capture_output=True)
        # The content, on daemon 0.
        content = os.path.join(work, "content")
        os.makedirs(os.path.join(content, "small"))
        shas = {}
        for i in range(a.files):
            data = os.urandom(a.file_mib << 20)
            with open(os.path.join(content, f"f{i}"), "wb") as f:
                f.write(data)
        for i in range(500):
            with open(os.path.join(content, "small", f"s{i}"), "wb") as f:
                f.write(os.urandom(random.randrange(100, 20000)))
        out = subprocess.run([cairn, "--root", roots[0], "add", "-r", content], check=True,
                             capture_output=True).stdout.decode()
        big, small = [], []
        for line in out.splitlines():
            parts = line.split(None, 2)
            if len(parts) == 3 and parts[0] == "added":
                path = os.path.join(os.path.dirname(content), parts[2])
                if os.path.isfile(path):
                    (small if "/small/" in path else big).append(parts[1])
                    with open(path, "rb") as f:
                        shas[parts[1]] = hashlib.sha256(f.read()).hexdigest()
        files = big + small
        log(f"{len(big)} large and {len(small)} small files added on daemon 0")
        for i in range(4):
            d = Daemon(cairn, roots[i], i, [x.addr for x in daemons], work)
            d.start()
            daemons.append(d)
        log("4 daemons up")

        reads = {"ok": 0, "eio": 0, "wrong": 0, "other": 0}
        lock = threading.Lock()

        def reader(d):
            while not stop.is_set():
                cid = random.choice(big if random.random() < 0.5 else small)
                path = os.path.join(d.root, "store", cid)
                try:
                    with open(path, "rb") as f:
                        got = hashlib.sha256(f.read()).hexdigest()
                    key = "ok" if got == shas[cid] else "wrong"
                except OSError as e:
                    # Daemon 3 restarting: its mount is briefly gone; not a read failure.
                    if d.n == 3 and (d.proc.poll() is not None or e.errno in (2, 107)):
                        time.sleep(0.5)
                        continue
                    key = "eio" if e.errno == 5 else "other"
                    log(f"daemon {d.n}: {cid}: {e}")
                with lock:
                    reads[key] += 1

        def gc_loop():
            # What the readers fetched is collected, and the kernel's copy dropped, so the
            # next reads go through the mounts to the network again.
            while not stop.wait(60):
                for d in daemons[1:]:
                    try:
                        d.cli("gc")
                    except Exception as e:  # noqa: BLE001
                        log(f"gc on daemon {d.n}: {e}")
                with open("/proc/sys/vm/drop_caches", "w") as f:
                    f.write("3\n")

        def churn():
            while not stop.wait(180):
                d = daemons[3]
                d.stop()
                time.sleep(5)
                d.addr = None
                d.start()

        hostile_runs = []

        def hostile():
            while not stop.is_set():
                r = subprocess.run(["node", "--import", "./node20-polyfills.mjs", "hostile.mjs",
                                    "--target", daemons[0].addr, "--seconds", "60"], cwd=helia,
                                   capture_output=True)
                lines = r.stdout.decode(errors="replace").strip().splitlines()
                if lines:
                    try:
                        hostile_runs.append(json.loads(lines[-1]))
                    except json.JSONDecodeError:
                        pass

        threads = [threading.Thread(target=reader, args=(d,), daemon=True) for d in daemons[1:]]
        threads += [threading.Thread(target=f, daemon=True) for f in (gc_loop, churn, hostile)]
        for t in threads:
            t.start()
        samples = []
        t0 = time.time()
        end = t0 + a.minutes * 60
        while time.time() < end:
            row = {"t": round(time.time() - t0, 1)}
            for d in daemons[:3]:
                row[f"d{d.n}"] = d.sample()
            with lock:
                row["reads"] = dict(reads)
            samples.append(row)
            log(json.dumps(row))
            time.sleep(max(0.0, 10 - (time.time() - t0 - row["t"])))
        stop.set()
        with open(a.out, "w") as f:
            json.dump({"samples": samples, "reads": reads, "files": len(files), "hostile": hostile_runs}, f, indent=1)

        warm = a.warmup * 60
        window = [s for s in samples if s["t"] >= warm]
        print(f"{a.minutes:g} minutes, 4 daemons, {len(big)} files of {a.file_mib} MiB + {len(small)} small; "
              f"window from {a.warmup:g} min ({len(window)} samples every 10 s)\n")
        print("| daemon | figure | at start of window | at end | slope per hour |")
        print("|---|---|---|---|---|")
        for n in range(3):
            for key, unit in (("rss_kib", "MiB"), ("fds", ""), ("threads", ""), ("tasks", "")):
                pts = [(s["t"], s[f"d{n}"][key]) for s in window]
                first = next((y for _, y in pts if y is not None), None)
                last = next((y for _, y in reversed(pts) if y is not None), None)
                sl = slope_per_hour(pts)
                if key == "rss_kib":
                    fmt = lambda v: "-" if v is None else f"{v / 1024:.1f} MiB"  # noqa: E731
                    print(f"| {n} | RSS | {fmt(first)} | {fmt(last)} | {sl / 1024:+.2f} MiB/h |")
                else:
                    print(f"| {n} | {key} | {first} | {last} | {sl:+.1f}/h |")
        print(f"\nreads: {reads['ok']} whole and verified, {reads['eio']} EIO, {reads['wrong']} wrong bytes, "
              f"{reads['other']} other errors")
        cut = sum(h.get("cutOff", 0) for h in hostile_runs)
        sent = {}
        for h in hostile_runs:
            for k, v in h.get("sent", {}).items():
                sent[k] = sent.get(k, 0) + v
        print(f"hostile peer: {len(hostile_runs)} rounds of 60 s, cut off {cut} times; sent {sent}")
        served = json.loads(daemons[0].cli("stat", "--json"))["network"]["totals"]
        print(f"daemon 0 served {served.get('bytes_sent', 0) / 1e9:.2f} GB in all")
    finally:
        stop.set()
        for d in daemons:
            d.stop()
        for p in PROCS:
            if p.poll() is None:
                p.kill()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work}")


if __name__ == "__main__":
    main()
