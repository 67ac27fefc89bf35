#!/usr/bin/env python3
"""Seed corpora for cairn's fuzz targets (scripts/fuzz.sh).

fixtures/  -> every CAR goes to corpus/car and corpus/dag; every block inside them goes to the
              target that decodes its codec (dag-pb: dagpb, unixfs, hamt; dag-cbor: dagcbor;
              dag-json: dagjson; dag-cbor blocks also to app);
app        -> an app node as `cairn add --app` writes it;
journals   -> a few well-formed index journals written here;
bitswap    -> a few Bitswap 1.2.0 and 1.0.0 messages written here, bare and as frames;
ledger     -> only the regression inputs (a statement list, a batch with a bad key);
regressions/{target}/ -> copied in too, so the fuzzer starts from every known crasher.
Usage: fuzz_seeds.py FIXTURES CORPUS REGRESSIONS
"""
import hashlib, os, shutil, struct, sys, zlib

fixtures, corpus, regressions = sys.argv[1:4]
TARGETS = ["dagpb", "unixfs", "hamt", "dagcbor", "dagjson", "car", "journal", "dag", "bitswap", "app", "ledger"]
for t in TARGETS:
    os.makedirs(os.path.join(corpus, t), exist_ok=True)


def put(target, data):
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(corpus, target, name), "wb") as f:
        f.write(data)


def uvarint(b, i):
    v = s = 0
    while True:
        if i >= len(b):
            raise ValueError("truncated")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i
        if s > 63:
            raise ValueError("long varint")


def cid_at(b, i):
    """(codec, end) of the CID starting at b[i]."""
    if b[i] == 0x12 and b[i + 1] == 0x20:
        return 0x70, i + 34
    _, i = uvarint(b, i)  # version
    codec, i = uvarint(b, i)
    _, i = uvarint(b, i)  # hash code
    n, i = uvarint(b, i)
    return codec, i + n


def blocks(car):
    if car[:11] == bytes([0x0A, 0xA1, 0x67]) + b"version" + b"\x02":
        off, size = struct.unpack_from("<QQ", car, 11 + 16)
        car = car[off : off + size]
    n, i = uvarint(car, 0)
    i += n
    while i < len(car):
        n, i = uvarint(car, i)
        if n == 0:
            return
        codec, start = cid_at(car, i)
        yield codec, car[start : i + n]
        i += n


WHERE = {0x70: ["dagpb", "unixfs", "hamt"], 0x71: ["dagcbor", "app"], 0x0129: ["dagjson"]}
cars = 0
for dirpath, _, files in os.walk(fixtures):
    for name in files:
        if not name.endswith(".car"):
            continue
        data = open(os.path.join(dirpath, name), "rb").read()
        if len(data) > 1 << 20:
            continue
        cars += 1
        put("car", data)
        put("dag", data)
        try:
            for codec, block in blocks(data):
                for t in WHERE.get(codec, []):
                    put(t, block)
        except (ValueError, IndexError):
            pass  # the broken fixtures are seeds for car/dag only


def cbor_head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")


def cbor_text(t):
    b = t.encode()
    return cbor_head(3, len(b)) + b


# An app node as cairn writes it (keys in DAG-CBOR order: shorter first).
content = bytes([0x01, 0x70, 0x12, 0x20]) + hashlib.sha256(b"content").digest()
offsets = cbor_head(4, 2) + cbor_head(0, 0) + cbor_head(0, 4096)
put("app", cbor_head(5, 5)
    + cbor_text("name") + cbor_text("hello")
    + cbor_text("refs") + cbor_head(5, 1) + cbor_text("bin/hello") + offsets
    + cbor_text("type") + cbor_text("cairn-app")
    + cbor_text("content") + b"\xd8\x2a" + cbor_head(2, len(content) + 1) + b"\x00" + content
    + cbor_text("version") + cbor_head(0, 1))


def record(op, key, meta=b""):
    payload = bytes([op]) + bytes([len(key)]) + key + meta
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


key = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(b"x").digest()
link = bytes([0x01, 0x70, 0x12, 0x20]) + hashlib.sha256(b"y").digest()
meta = bytes([5, 0x70, 1, len(link)]) + link
put("journal", record(1, key, meta))
put("journal", record(1, key, meta) + record(2, key))
put("journal", record(1, key, meta) + record(2, key)[:-3])


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def pb_bytes(field, b):
    return varint(field << 3 | 2) + varint(len(b)) + b


def pb_uint(field, v):
    return varint(field << 3) + varint(v & 0xFFFFFFFFFFFFFFFF)


def entry(cid, priority=1, cancel=False, have=False, dont_have=False):
    e = pb_bytes(1, cid)
    e += pb_uint(2, priority) if priority else b""
    e += pb_uint(3, 1) if cancel else b""
    e += pb_uint(4, 1) if have else b""
    e += pb_uint(5, 1) if dont_have else b""
    return e


def bitswap(entries=(), full=False, blocks=(), v0_blocks=(), presences=(), pending=0):
    """A Bitswap message (boxo's message.proto)."""
    wl = b"".join(pb_bytes(1, e) for e in entries) + (pb_uint(2, 1) if full else b"")
    m = pb_bytes(1, wl)
    m += b"".join(pb_bytes(2, d) for d in v0_blocks)
    m += b"".join(pb_bytes(3, pb_bytes(1, p) + pb_bytes(2, d)) for p, d in blocks)
    m += b"".join(pb_bytes(4, pb_bytes(1, c) + (pb_uint(2, 1) if dont else b"")) for c, dont in presences)
    return m + (pb_uint(5, pending) if pending else b"")


raw = lambda d: bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(d).digest()
v0 = lambda d: bytes([0x12, 0x20]) + hashlib.sha256(d).digest()
pb_block = b"\x0a\x02\x08\x01"
messages = [
    bitswap([entry(raw(b"%d" % i), have=True, dont_have=True) for i in range(8)]),
    bitswap([entry(raw(b"%d" % i), priority=0, cancel=True) for i in range(4)]),
    bitswap([entry(v0(pb_block), priority=-5), entry(raw(b"a"), priority=2**31 - 1)], full=True),
    bitswap(blocks=[(bytes([0x01, 0x55, 0x12, 0x20]), b"hello"), (bytes([0x00, 0x70, 0x12, 0x20]), pb_block)]),
    bitswap(presences=[(raw(b"x"), False), (raw(b"y"), True)], pending=12345),
    bitswap([entry(v0(pb_block))], v0_blocks=[pb_block, b"hello"]),
]
for m in messages:
    put("bitswap", m)
    put("bitswap", varint(len(m)) + m)
put("bitswap", b"".join(varint(len(m)) + m for m in messages))

for t in TARGETS:
    d = os.path.join(regressions, t)
    if os.path.isdir(d):
        for f in os.listdir(d):
            shutil.copy(os.path.join(d, f), os.path.join(corpus, t, f))
print(f"seeds from {cars} CARs:", ", ".join(f"{t} {len(os.listdir(os.path.join(corpus, t)))}" for t in TARGETS))
