// An honest Helia peer serving one raw block under a sha3-256 CID (a hash function cairn
// cannot compute): tests/hostile_js.rs copies it beside peer.mjs and runs it.
//
//   node --import ./node20-polyfills.mjs sha3_peer.mjs
//
// Prints one JSON line {peerId, multiaddrs, cid} and serves until killed.
import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { withBitswap } from '@helia/bitswap'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { createHash } from 'node:crypto'

const SHA3_256 = 0x16
const data = new TextEncoder().encode('a block under sha3-256, served honestly\n')
const digest = createDigest(SHA3_256, createHash('sha3-256').update(data).digest())
const cid = CID.createV1(0x55, digest)

// Put straight into the store: Helia's own put would look for a sha3 hasher to check it.
const blockstore = new MemoryBlockstore()
await blockstore.put(cid, data)

const helia = withBitswap(withLibp2pLight(createHeliaLight({
  blockstore,
  datastore: new MemoryDatastore(),
  routers: []
}), {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() }
}))
await helia.start()
console.log(JSON.stringify({
  peerId: helia.libp2p.peerId.toString(),
  multiaddrs: helia.libp2p.getMultiaddrs().map(m => m.toString()),
  cid: cid.toString()
}))
const shutdown = async () => { await helia.stop(); process.exit(0) }
process.on('SIGINT', shutdown)
process.on('SIGTERM', shutdown)
setInterval(() => {}, 1 << 30)
