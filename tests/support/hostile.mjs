// A hostile Bitswap peer in JavaScript, on the libp2p stack Helia runs on (tcp, noise, yamux,
// identify from ../shared/interop/helia's node_modules): tests/hostile_js.rs copies it beside
// peer.mjs and runs it against a cairn daemon.
//
//   node --import ./node20-polyfills.mjs hostile.mjs --target MULTIADDR [--seconds N]
//
// For N seconds (default 20), each identity it takes dials the target and:
//   - all along, answers every want-have with HAVE and every want-block with the wrong bytes
//     under the wanted CID's prefix;
//   - for 5 s, floods wants and cancels (1,024 wants, then their cancels, four times a second,
//     64k wants in all over the run);
//   - then sends blocks nobody asked for, garbage frames, frames that end early and 1 GiB
//     length prefixes, until it is cut off.
// When the target cuts an identity off, it makes a new one and starts again. At the end it
// prints one JSON line: what it sent, how often it was cut off, the wants it was sent.
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { randomBytes } from 'node:crypto'

const args = process.argv.slice(2)
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt }
const target = multiaddr(opt('--target'))
const seconds = Number(opt('--seconds', '20'))
const verbose = args.includes('--verbose')
const debug = (...a) => { if (verbose) console.error(...a) }
const PROTOCOL = '/ipfs/bitswap/1.2.0'

// --- protobuf, by hand: the attack needs bytes no encoder would write -------------------------
const concat = (parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) { out.set(p, at); at += p.length }
  return out
}
const varint = (n) => {
  const out = []
  while (n >= 0x80) { out.push((n % 0x80) | 0x80); n = Math.floor(n / 0x80) }
  out.push(n)
  return Uint8Array.from(out)
}
const bytesField = (num, b) => concat([varint(num * 8 + 2), varint(b.length), b])
const intField = (num, v) => concat([varint(num * 8), varint(v)])
const frame = (msg) => concat([varint(msg.length), msg])

const entry = (cid, { cancel = false, have = false } = {}) => bytesField(1, concat([
  bytesField(1, cid.bytes), intField(2, 1),
  ...(cancel ? [intField(3, 1)] : []),
  ...(have ? [intField(4, 1), intField(5, 1)] : [])
]))
const wantlist = (entries) => bytesField(1, concat(entries))
const prefixOf = (cid) => concat([varint(cid.version), varint(cid.code), varint(cid.multihash.code), varint(cid.multihash.size)])
const block = (prefix, data) => bytesField(3, concat([bytesField(1, prefix), bytesField(2, data)]))
const haveOf = (cidBytes) => bytesField(4, concat([bytesField(1, cidBytes)]))

// Reads varint-prefixed fields of a protobuf; yields [field, wireType, value].
function * fields (buf) {
  let i = 0
  const readVarint = () => {
    let n = 0; let mul = 1
    for (;;) {
      const b = buf[i++]
      if (b === undefined) throw new Error('truncated')
      n += (b & 0x7f) * mul
      if (b < 0x80) return n
      mul *= 0x80
    }
  }
  while (i < buf.length) {
    const key = readVarint()
    const wt = key & 7
    if (wt === 0) { yield [key >>> 3, 0, readVarint()] } else if (wt === 2) {
      const len = readVarint()
      yield [key >>> 3, 2, buf.subarray(i, i + len)]
      i += len
    } else { throw new Error('wire type ' + wt) }
  }
}

// The wants in one message the target sent us.
function wantsIn (msg) {
  const out = []
  for (const [f, , v] of fields(msg)) {
    if (f !== 1) continue
    for (const [ef, , ev] of fields(v)) {
      if (ef !== 1) continue
      const e = { cancel: false, have: false }
      for (const [k, , x] of fields(ev)) {
        if (k === 1) e.cid = CID.decode(x)
        if (k === 3) e.cancel = x !== 0
        if (k === 4) e.have = x === 1
      }
      if (e.cid) out.push(e)
    }
  }
  return out
}

// Splits a byte stream of varint-prefixed frames.
async function * frames (stream) {
  let buf = new Uint8Array(0)
  for await (const chunk of stream) {
    const c = chunk.subarray ? chunk.subarray() : chunk
    buf = concat([buf, c])
    for (;;) {
      let len = 0; let mul = 1; let i = 0; let done = false
      while (i < buf.length) {
        const b = buf[i++]
        len += (b & 0x7f) * mul; mul *= 0x80
        if (b < 0x80) { done = true; break }
      }
      if (!done || buf.length - i < len) break
      yield buf.subarray(i, i + len)
      buf = buf.subarray(i + len)
    }
  }
}

// --- the attack --------------------------------------------------------------------------------
const sent = { unsolicited: 0, wrong: 0, haves: 0, garbage: 0, truncated: 0, huge: 0, wants: 0, cancels: 0 }
let cutOff = 0
let wantsSeen = 0
const deadline = Date.now() + seconds * 1000
const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

async function write (node, bytes, { close = true } = {}) {
  const stream = await node.dialProtocol(target, PROTOCOL, { signal: AbortSignal.timeout(5000) })
  if (!stream.send(bytes)) await stream.onDrain({ signal: AbortSignal.timeout(5000) })
  if (close) await stream.close({ signal: AbortSignal.timeout(5000) })
  else stream.abort(new Error('cut short'))
}

async function oneIdentity () {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })
  let alive = true
  node.addEventListener('peer:disconnect', () => { alive = false })
  await node.handle(PROTOCOL, (stream) => {
    Promise.resolve().then(async () => {
      // Our side of an inbound stream carries nothing (the target waits for both sides).
      await stream.close({ signal: AbortSignal.timeout(5000) }).catch(() => {})
      for await (const msg of frames(stream)) {
        const wants = wantsIn(msg)
        if (wants.length) debug('wants:', wants.length, wants.filter(w => w.cancel).length, 'cancels')
        for (const w of wants) {
          if (w.cancel) continue
          wantsSeen++
          try {
            if (w.have) {
              await write(node, frame(haveOf(w.cid.bytes))); sent.haves++
            } else {
              const wrong = randomBytes(1000)
              await write(node, frame(block(prefixOf(w.cid), wrong))); sent.wrong++
            }
          } catch {}
        }
      }
    }).catch((e) => debug('inbound:', e))
  }, { runOnLimitedConnection: true, maxInboundStreams: 1024 })
  try {
    await node.dial(target, { signal: AbortSignal.timeout(5000) })
  } catch {
    await node.stop()
    await sleep(200)
    return
  }
  const attacks = [
    async () => { // blocks nobody asked for
      const parts = []
      for (let i = 0; i < 10; i++) {
        const data = randomBytes(2000)
        const cid = CID.createV1(0x55, await sha256.digest(data))
        parts.push(block(prefixOf(cid), data))
      }
      await write(node, frame(concat(parts))); sent.unsolicited += 10
    },
    async () => { await write(node, frame(randomBytes(3000))); sent.garbage++ },
    async () => { // a frame that says 100 bytes more than it carries
      const body = wantlist([entry(CID.createV1(0x55, await sha256.digest(randomBytes(8))))])
      await write(node, concat([varint(body.length + 100), body])); sent.truncated++
    },
    async () => { await write(node, concat([varint(1 << 30), randomBytes(65536)]), { close: false }); sent.huge++ },
    async () => { // 1,024 wants, then their cancels
      const cids = []
      for (let i = 0; i < 1024; i++) cids.push(CID.createV1(0x55, await sha256.digest(randomBytes(8))))
      await write(node, frame(wantlist(cids.map(c => entry(c, { have: true }))))); sent.wants += 1024
      await write(node, frame(wantlist(cids.map(c => entry(c, { cancel: true }))))); sent.cancels += 1024
    }
  ]
  // First it only lies and floods within the rules (wrong blocks for wants, 1,024 wants and
  // their cancels), so it is around while the target fetches; then it turns to messages that
  // get it cut off, and starts again under a new identity.
  const since = Date.now()
  let round = 0
  while (alive && Date.now() < deadline) {
    if (Date.now() - since < 5000) {
      if (sent.wants < 64 * 1024) { try { await attacks[4]() } catch {} }
      await sleep(250)
      continue
    }
    const attack = attacks[round % 4]
    try { await attack() } catch {}
    round++
    await sleep(50)
  }
  if (!alive) cutOff++
  await node.stop()
}

while (Date.now() < deadline) {
  await oneIdentity()
}
console.log(JSON.stringify({ sent, cutOff, wantsSeen }))
process.exit(0)
