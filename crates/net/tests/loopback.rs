//! Two real nodes on loopback moving blocks, through the public API.

use std::{sync::Arc, time::Duration};

use cairn_net::{node, Config};
use cairn_store::{BlockSource, Cid, HashAlg, Store};

fn config() -> Config {
    Config {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        dht: true,
        fetch_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

async fn node(dir: &std::path::Path) -> (Arc<Store>, cairn_net::Client) {
    let store = Arc::new(Store::init(dir).unwrap());
    let key = libp2p::identity::Keypair::generate_ed25519();
    let client = node::start(&config(), key, store.clone()).await.unwrap();
    (store, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_moves_between_two_nodes() {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sa, a) = node(da.path()).await;
    let (sb, b) = node(db.path()).await;
    let data = b"a block that only node a has".to_vec();
    let cid = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(&data));
    sa.put(&cid, &data).unwrap();
    let addr = a.listen_addrs().await.unwrap()[0].clone();
    assert_eq!(b.dial(addr).await.unwrap(), a.peer_id());
    let got = b
        .want(cid, Duration::from_secs(10))
        .await
        .expect("block from a");
    assert_eq!(&got[..], &data[..]);
    // Stored on b as cache.
    for _ in 0..100 {
        if sb.has(&cid).unwrap() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(sb.has(&cid).unwrap());
    assert_eq!(sb.get(&cid).unwrap().unwrap(), data);
    let missing = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(b"nobody has this"));
    assert!(b.want(missing, Duration::from_millis(700)).await.is_none());
    let stats = a.stats().await.unwrap();
    assert_eq!(stats.totals.blocks_sent, 1, "{stats:?}");
}
