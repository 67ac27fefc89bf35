//! One conformance suite for `BlockSource` (the contract in `cairn_store::source`), run
//! against the local store and against the network source in front of it, with a real second
//! node on loopback behind the network source.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cairn_net::{node, Config, NetworkSource};
use cairn_store::{BlockSource, Cid, HashAlg, Store, StoreError};
use multihash::Multihash;

fn raw(data: &[u8]) -> Cid {
    Cid::new_v1(0x55, HashAlg::Sha2_256.digest(data))
}

/// What a source is tested with.
struct Case {
    /// Here, intact.
    present: Block,
    /// Here, with a flipped byte on disk.
    corrupt: Block,
    /// Not here.
    absent: Cid,
    /// What the source may do besides the store: fetch absent and corrupt blocks.
    network: Option<Network>,
}

struct Network {
    /// Absent here, held by the peer.
    remote: Block,
    /// The longest an absent block may take to be given up on.
    timeout: Duration,
}

/// The contract, checked on the answers a caller sees.
fn suite(src: &dyn BlockSource, case: &Case) {
    // A present block: exactly its bytes, appended after what the buffer held; its size and
    // presence without reading it.
    let (cid, bytes) = &case.present;
    assert_eq!(src.get(cid).unwrap().as_deref(), Some(&bytes[..]));
    let mut buf = b"before".to_vec();
    assert!(src.get_into(cid, &mut buf).unwrap());
    assert_eq!(buf, [&b"before"[..], bytes].concat());
    assert!(src.has(cid).unwrap());
    assert_eq!(src.size(cid).unwrap(), Some(bytes.len() as u64));

    // Identity CIDs hold their bytes.
    let id = Cid::new_v1(0x55, Multihash::wrap(0, b"inline").unwrap());
    assert_eq!(src.get(&id).unwrap().as_deref(), Some(&b"inline"[..]));

    // `has` and `size` answer from what is here, without waiting for anyone.
    let t = Instant::now();
    assert!(!src.has(&case.absent).unwrap());
    assert_eq!(src.size(&case.absent).unwrap(), None);
    assert!(t.elapsed() < Duration::from_millis(200));
    // `prefetch` never fails, whatever it is given.
    src.prefetch(&[case.absent, *cid, id]);

    // A corrupt block: never its wrong bytes.
    let (ccid, cbytes) = &case.corrupt;
    let mut buf = b"kept".to_vec();
    match (&case.network, src.get_into(ccid, &mut buf)) {
        // The store refuses it and leaves the buffer alone.
        (None, Err(StoreError::Corrupt { cid })) => {
            assert_eq!(cid, *ccid);
            assert_eq!(buf, b"kept");
        }
        // The network source fetches it again from a peer that has it.
        (Some(_), Ok(true)) => assert_eq!(buf, [&b"kept"[..], cbytes].concat()),
        (_, other) => panic!("corrupt block: {other:?}"),
    }

    // An absent block: the store says absent; the network source waits a bounded time,
    // then says unavailable (never a hang, never a wrong answer).
    let t = Instant::now();
    let mut buf = b"kept".to_vec();
    match (&case.network, src.get_into(&case.absent, &mut buf)) {
        (None, Ok(false)) => {}
        (Some(n), Err(StoreError::Unavailable { cid, .. })) => {
            assert_eq!(cid, case.absent);
            assert!(
                t.elapsed() < n.timeout + Duration::from_secs(2),
                "{:?}",
                t.elapsed()
            );
        }
        (_, other) => panic!("absent block: {other:?}"),
    }
    assert_eq!(buf, b"kept");

    // The network source brings what only a peer has.
    if let Some(n) = &case.network {
        let (rcid, rbytes) = &n.remote;
        assert!(!src.has(rcid).unwrap());
        assert_eq!(src.get(rcid).unwrap().as_deref(), Some(&rbytes[..]));
    }
}

/// A store holding `present` and a corrupted `corrupt`.
fn store(dir: &std::path::Path, case_blocks: &[Block], corrupt: &Cid) -> Arc<Store> {
    let s = Arc::new(Store::init(dir).unwrap());
    for (c, b) in case_blocks {
        s.put(c, b).unwrap();
    }
    let path = s.layout().block_path(corrupt);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&path, bytes).unwrap();
    s
}

/// A block: its CID and bytes.
type Block = (Cid, Vec<u8>);

/// The present, corrupt and absent blocks of a case.
fn blocks() -> (Block, Block, Cid) {
    let present = b"a block that is here".to_vec();
    let corrupt = b"a block that rots on disk".to_vec();
    (
        (raw(&present), present),
        (raw(&corrupt), corrupt),
        raw(b"a block nobody has"),
    )
}

#[test]
fn the_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let (present, corrupt, absent) = blocks();
    let s = store(dir.path(), &[present.clone(), corrupt.clone()], &corrupt.0);
    suite(
        &*s,
        &Case {
            present,
            corrupt,
            absent,
            network: None,
        },
    );
}

#[test]
fn the_network_source_keeps_the_contract() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (present, corrupt, absent) = blocks();
    let remote = b"a block only the peer has".to_vec();
    let remote = (raw(&remote), remote);
    // The peer: has the remote block and an intact copy of the corrupt one.
    let peer_dir = tempfile::tempdir().unwrap();
    let peer_store = Arc::new(Store::init(peer_dir.path()).unwrap());
    peer_store.put(&remote.0, &remote.1).unwrap();
    peer_store.put(&corrupt.0, &corrupt.1).unwrap();
    let cfg = Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        dht: false,
        ..Config::default()
    };
    let key = libp2p::identity::Keypair::generate_ed25519();
    let peer = rt.block_on(node::start(&cfg, key, peer_store)).unwrap();
    let addr = rt.block_on(peer.listen_addrs()).unwrap()[0].clone();

    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), &[present.clone(), corrupt.clone()], &corrupt.0);
    let key = libp2p::identity::Keypair::generate_ed25519();
    let client = rt.block_on(node::start(&cfg, key, s.clone())).unwrap();
    rt.block_on(client.dial(addr)).unwrap();
    let timeout = Duration::from_secs(2);
    let src = NetworkSource::new(s.clone(), client, timeout, 4);
    // The suite runs on a plain thread, as FUSE threads do.
    std::thread::scope(|sc| {
        sc.spawn(|| {
            suite(
                &src,
                &Case {
                    present,
                    corrupt: corrupt.clone(),
                    absent,
                    network: Some(Network { remote, timeout }),
                },
            )
        });
    });
    // The corrupt copy was moved aside, and the good one fetched in its place.
    assert!(s
        .layout()
        .corrupt()
        .join(cairn_store::block_name(&corrupt.0))
        .exists());
}
