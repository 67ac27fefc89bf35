"""What a local user can throw at a daemon's control socket (tests/control_socket.rs runs this
as the user nobody). Usage: control_abuse.py SOCKET CID

Prints one JSON object per step, then, holding 3,000 idle connections open, waits for a line
on stdin before it lets them go:
  {"step": "long_line", "sent": bytes written before the daemon closed, "reply": its line}
  {"step": "window", "reply": ...}      a fetch with window 2**64-1
  {"step": "prefetch", "reply": ...}    a prefetch of 1,100 CIDs
  {"step": "idle", "open": connections the daemon kept, "refused": ones it answered with an
   error and closed, "errors": distinct error lines}
"""
import json
import resource
import socket
import sys

sock_path, cid = sys.argv[1], sys.argv[2]


def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    return s


def reply(s, timeout=20):
    s.settimeout(timeout)
    buf = b""
    try:
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return buf.decode(errors="replace").strip()


def say(o):
    print(json.dumps(o), flush=True)


# 1 GiB without a newline.
s = connect()
chunk = b"x" * (1 << 20)
sent = 0
try:
    while sent < (1 << 30):
        s.sendall(chunk)
        sent += len(chunk)
except (BrokenPipeError, ConnectionResetError):
    pass
say({"step": "long_line", "sent": sent, "reply": reply(s)})
s.close()

# An absurd window, and too many CIDs at once.
for step, req in [
    ("window", {"op": "fetch", "cid": cid, "window": 2**64 - 1}),
    ("prefetch", {"op": "prefetch", "cids": ["QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"] * 1100}),
]:
    s = connect()
    s.sendall((json.dumps(req) + "\n").encode())
    say({"step": step, "reply": reply(s)})
    s.close()

# 3,000 idle connections.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
held = []
for _ in range(3000):
    try:
        held.append(connect())
    except OSError as e:
        say({"step": "connect_failed", "error": str(e)})
        break
open_, refused, errors = 0, 0, set()
for s in held:
    s.settimeout(0.05)
    try:
        data = s.recv(4096)
        if data:
            refused += 1
            errors.add(data.decode(errors="replace").strip())
        else:
            refused += 1
    except socket.timeout:
        open_ += 1
    except OSError:
        refused += 1
say({"step": "idle", "open": open_, "refused": refused, "errors": sorted(errors)})
sys.stdin.readline()
