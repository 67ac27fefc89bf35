#!/usr/bin/env python3
"""Seed corpora for cairn's fuzz targets (scripts/fuzz.sh).

fixtures/  -> every CAR goes to corpus/car and corpus/dag; every block inside them goes to the
              target that decodes its codec (dag-pb: dagpb, unixfs, hamt; dag-cbor: dagcbor;
              dag-json: dagjson);
journals   -> a few well-formed index journals written here;
regressions/{target}/ -> copied in too, so the fuzzer starts from every known crasher.
Usage: fuzz_seeds.py FIXTURES CORPUS REGRESSIONS
"""
import hashlib, os, shutil, struct, sys, zlib

fixtures, corpus, regressions = sys.argv[1:4]
TARGETS = ["dagpb", "unixfs", "hamt", "dagcbor", "dagjson", "car", "journal", "dag"]
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


WHERE = {0x70: ["dagpb", "unixfs", "hamt"], 0x71: ["dagcbor"], 0x0129: ["dagjson"]}
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


def record(op, key, meta=b""):
    payload = bytes([op]) + bytes([len(key)]) + key + meta
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


key = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(b"x").digest()
link = bytes([0x01, 0x70, 0x12, 0x20]) + hashlib.sha256(b"y").digest()
meta = bytes([5, 0x70, 1, len(link)]) + link
put("journal", record(1, key, meta))
put("journal", record(1, key, meta) + record(2, key))
put("journal", record(1, key, meta) + record(2, key)[:-3])

for t in TARGETS:
    d = os.path.join(regressions, t)
    if os.path.isdir(d):
        for f in os.listdir(d):
            shutil.copy(os.path.join(d, f), os.path.join(corpus, t, f))
print(f"seeds from {cars} CARs:", ", ".join(f"{t} {len(os.listdir(os.path.join(corpus, t)))}" for t in TARGETS))
