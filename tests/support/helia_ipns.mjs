// Loopback-only Helia IPNS publisher/resolver over a kubo LAN DHT.
//
//   node --import ./node20-polyfills.mjs helia_ipns.mjs [--bootstrap MA]...
//        [--timeout-ms N] MODE ...
//
//   publish --count N --value /ipfs/CID   N fresh Ed25519 keys, one DHT publish
//                                         each; prints {"name","ms"} per key
//   resolve NAME...                       resolve each name from the DHT, no
//                                         cache; prints {"name","value","ms"}
//                                         or {"name","error"}
//   serve                                 stay up (a DHT server for others)
//
// The first line printed is always {"peerId","multiaddrs"}. Exit code is 0
// only if every publish/resolve succeeded.
//
// Must live next to Helia's node_modules (the test copies it into the
// cairn-interop helia directory) since modules resolve from the script path.
//
// Network: listens on /ip4/127.0.0.1/tcp/0, TCP + noise + yamux + identify +
// ping + kad-dht on /ipfs/lan/kad/1.0.0 (kubo's LAN DHT) in server mode. The
// only outbound dials are the --bootstrap peers and whatever peers the DHT
// learns from them. No public bootstrap list, no mDNS, no delegated routing,
// no HTTP routers, no autonat/relay/upnp.
import { createHeliaLight } from 'helia'
import { withLibp2pLight } from '@helia/libp2p'
import { ipns, ipnsValidator, ipnsSelector, IPNSEntry } from '@helia/ipns'
import { kadDHT, removePublicAddressesMapper } from '@libp2p/kad-dht'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { MemoryBlockstore } from 'blockstore-core'
import { MemoryDatastore } from 'datastore-core'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'

const args = process.argv.slice(2)
const optAll = (name) => args.flatMap((a, i) => a === name ? [args[i + 1]] : [])
const opt = (name, dflt) => optAll(name).at(-1) ?? dflt
// positional arguments: everything that is neither an option nor its value
const positional = args.filter((a, i) => !a.startsWith('--') && !(args[i - 1] ?? '').startsWith('--'))
const [mode, ...names] = positional
const bootstrap = optAll('--bootstrap')
const timeoutMs = Number(opt('--timeout-ms', '60000'))
const log = (o) => console.log(JSON.stringify(o))

if (!['publish', 'resolve', 'serve'].includes(mode)) {
  console.error('usage: helia_ipns.mjs [--bootstrap MA]... publish --count N --value /ipfs/CID | resolve NAME... | serve')
  process.exit(2)
}

const helia = withLibp2pLight(createHeliaLight({
  blockstore: new MemoryBlockstore(),
  datastore: new MemoryDatastore(),
  routers: [] // no delegated/HTTP routing; withLibp2pLight adds the libp2p (DHT) router
}), {
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    ping: ping(), // kad-dht declares @libp2p/ping as a service dependency
    dht: kadDHT({
      protocol: '/ipfs/lan/kad/1.0.0',
      clientMode: false,
      initialQuerySelfInterval: 0,
      // LAN DHT: keep only private (incl. loopback) addresses; the default
      // mapper drops private addresses, which would leave no dialable peers
      peerInfoMapper: removePublicAddressesMapper,
      // @helia/ipns 10 ships its own validator, but it needs a keychain as
      // third argument (kad-dht passes (key, value, options)), so wrap it;
      // helia.keychain is read lazily, by the time records arrive it exists
      validators: { ipns: async (key, value, options) => { await ipnsValidator(key, value, helia.keychain, options) } },
      // kad-dht hands the selector raw marshalled records, ipnsSelector wants
      // decoded IPNSEntry objects
      selectors: { ipns: (key, values) => ipnsSelector(key, values.map(v => IPNSEntry.decode(v))) }
    })
  }
  // no peerDiscovery (bootstrap/mDNS), no autonat/relay/upnp
})

await helia.start()
const libp2p = helia.libp2p
log({ peerId: libp2p.peerId.toString(), multiaddrs: libp2p.getMultiaddrs().map(String) })

// kad-dht holds every query until its initial self-query has run; with
// initialQuerySelfInterval 0 that self-query starts at once and waits for the
// first DHT peer. Wait for it here (after dialling the bootstrap peers) so the
// timed operations below do not include it.
const selfQueried = new Promise((resolve, reject) => {
  libp2p.addEventListener('kad-dht:query:self', resolve, { once: true })
  setTimeout(() => reject(new Error('no DHT self-query completed within 10 s of dialling --bootstrap')), 10000).unref()
})
for (const ma of bootstrap) {
  await libp2p.dial(multiaddr(ma), { signal: AbortSignal.timeout(10000) })
}
if (bootstrap.length > 0) await selfQueried
else selfQueried.catch(() => {}) // serve with no bootstrap: nothing to wait for

// created after start: ipns() inspects helia.libp2p, which throws before start
// (it also installs equivalent validator/selector wrappers on the DHT itself)
const name = ipns(helia)
let failed = 0

if (mode === 'publish') {
  const count = Number(opt('--count', '1'))
  const value = CID.parse(opt('--value', '').replace(/^\/ipfs\//, ''))
  const run = `${process.pid}-${Date.now()}`
  for (let i = 0; i < count; i++) {
    // count successful PUT_VALUE responses from DHT peers: kad-dht's put
    // resolves even when no remote peer stored the record
    let puts = 0
    const onProgress = (evt) => {
      if (evt.type === 'kad-dht:query:peer-response' && evt.detail.messageName === 'PUT_VALUE') puts++
    }
    const t0 = performance.now()
    try {
      // unknown key name => the keychain generates a fresh Ed25519 key
      const res = await name.publish(`key-${run}-${i}`, value, { offline: false, onProgress, signal: AbortSignal.timeout(timeoutMs) })
      const ms = Math.round(performance.now() - t0)
      if (puts === 0) throw new Error(`published locally but no DHT peer accepted the record (${ms} ms)`)
      log({ name: res.name.replace(/^\/ipns\//, ''), ms, puts })
    } catch (err) {
      failed++
      log({ error: String(err) })
    }
  }
} else if (mode === 'resolve') {
  for (const n of names) {
    const t0 = performance.now()
    try {
      let value
      // yields once per hop for recursive records; keep the last value
      for await (const r of name.resolve(n.startsWith('/ipns/') ? n : `/ipns/${n}`, { nocache: true, offline: false, signal: AbortSignal.timeout(timeoutMs) })) {
        value = r.value
      }
      log({ name: n, value, ms: Math.round(performance.now() - t0) })
    } catch (err) {
      failed++
      log({ name: n, error: String(err) })
    }
  }
} else {
  // serve: stay up until signalled
  const shutdown = async () => { await helia.stop(); process.exit(0) }
  process.on('SIGINT', shutdown)
  process.on('SIGTERM', shutdown)
  setInterval(() => {}, 1 << 30)
}

if (mode !== 'serve') {
  await helia.stop()
  process.exit(failed ? 1 : 0)
}
