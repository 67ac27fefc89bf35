//! DHT peers against a daemon: a lookup answered with 50,000 providers, and provider records
//! announced on the LAN DHT asked for on the public one. The DHT peers are libp2p nodes of
//! the test's own (rust-libp2p's Kademlia, told to answer with as many providers as it
//! likes), on loopback, so they speak kubo's LAN DHT.

use std::{
    io::Read,
    net::TcpListener,
    num::NonZeroUsize,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use cairn_store::{Cid, HashAlg};
use libp2p::{
    futures::StreamExt,
    identify,
    identity::Keypair,
    kad::{
        self,
        store::{MemoryStore, RecordStore},
        GetProvidersOk, ProviderRecord, QueryResult, Quorum, Record, RecordKey,
    },
    request_response,
    swarm::{behaviour::toggle::Toggle, NetworkBehaviour, SwarmEvent},
    Multiaddr, PeerId, StreamProtocol, Swarm,
};
use tokio::sync::{mpsc, oneshot};

use crate::{
    peers::Daemon,
    raw_peer::tcp_swarm,
    util::{eventually, fd_count, ledger_row, Root},
};

pub(crate) const LAN: StreamProtocol = StreamProtocol::new("/ipfs/lan/kad/1.0.0");
const PUBLIC: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct KadPeerBehaviour {
    identify: identify::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    /// The same records on the public DHT's protocol too, if asked for.
    also: Toggle<kad::Behaviour<MemoryStore>>,
    /// cairn's direct name asks, answered with the records it holds, unchecked.
    names: cairn_net::dht::ask::Behaviour,
}

/// A Kademlia server on `protocol` that answers with every provider it holds, not twenty.
fn liar_kad(peer: PeerId, protocol: StreamProtocol) -> kad::Behaviour<MemoryStore> {
    let mut cfg = kad::Config::new(protocol);
    cfg.set_max_packet_size(16 << 20);
    cfg.set_replication_factor(NonZeroUsize::new(60_000).unwrap());
    let store = MemoryStore::with_config(
        peer,
        kad::store::MemoryStoreConfig {
            // Room for the hostile IPNS records it serves.
            max_records: 64,
            max_value_bytes: 64 << 10,
            max_provided_keys: 100_000,
            max_providers_per_key: 60_000,
        },
    );
    let mut k = kad::Behaviour::with_config(peer, store, cfg);
    k.set_mode(Some(kad::Mode::Server));
    k
}

pub(crate) enum Cmd {
    Dial(Multiaddr),
    AddAddress(PeerId, Multiaddr),
    Provide(RecordKey),
    Find(RecordKey, oneshot::Sender<Vec<PeerId>>),
    /// Put a value record at one peer (a PUT_VALUE straight to it).
    PutTo(Record, PeerId),
    /// Hold a value record, served to whoever asks (GET_VALUE), unchecked.
    Hold(Record),
    /// Put a value record at one peer and say whether it took it.
    PutWait(Record, PeerId, oneshot::Sender<bool>),
}

/// A Kademlia node on one DHT protocol, serving whatever provider records it was given, as
/// many per answer as it holds.
pub(crate) struct KadPeer {
    rt: tokio::runtime::Runtime,
    pub(crate) peer: PeerId,
    addr: Multiaddr,
    cmds: mpsc::Sender<Cmd>,
}

impl KadPeer {
    pub(crate) fn start(protocol: StreamProtocol, records: Vec<ProviderRecord>) -> KadPeer {
        KadPeer::start_on(&[protocol], records)
    }

    /// A peer speaking each of `protocols` (one Kademlia each, the same records in each).
    fn start_on(protocols: &[StreamProtocol], records: Vec<ProviderRecord>) -> KadPeer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let key = Keypair::generate_ed25519();
        let peer = key.public().to_peer_id();
        let mut swarm: Swarm<KadPeerBehaviour> = tcp_swarm(&rt, key, |key| KadPeerBehaviour {
            identify: identify::Behaviour::new(identify::Config::new(
                "/ipfs/0.1.0".into(),
                key.public(),
            )),
            kad: liar_kad(peer, protocols[0].clone()),
            also: Toggle::from(protocols.get(1).map(|p| liar_kad(peer, p.clone()))),
            names: cairn_net::dht::ask::behaviour(),
        });
        for r in &records {
            if let Some(k) = swarm.behaviour_mut().also.as_mut() {
                k.store_mut().add_provider(r.clone()).unwrap();
            }
        }
        for r in records {
            swarm
                .behaviour_mut()
                .kad
                .store_mut()
                .add_provider(r)
                .unwrap();
        }
        let addr = {
            let _rt = rt.enter();
            swarm
                .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
                .unwrap();
            rt.block_on(async {
                loop {
                    if let SwarmEvent::NewListenAddr { address, .. } =
                        swarm.select_next_some().await
                    {
                        break address;
                    }
                }
            })
        };
        swarm.add_external_address(addr.clone());
        let (cmds, rx) = mpsc::channel(16);
        rt.spawn(drive(swarm, rx));
        KadPeer {
            rt,
            peer,
            addr: addr.with_p2p(peer).unwrap(),
            cmds,
        }
    }

    pub(crate) fn cmd(&self, c: Cmd) {
        self.rt.block_on(self.cmds.send(c)).unwrap();
    }

    /// Puts `r` at `to`; whether `to` acknowledged it (a peer that refuses a record resets
    /// the stream).
    pub(crate) fn put_at(&self, r: Record, to: PeerId) -> bool {
        let (tx, rx) = oneshot::channel();
        self.cmd(Cmd::PutWait(r, to, tx));
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), rx).await })
            .expect("the put ends")
            .unwrap()
    }

    fn find(&self, key: RecordKey) -> Vec<PeerId> {
        let (tx, rx) = oneshot::channel();
        self.cmd(Cmd::Find(key, tx));
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), rx).await })
            .expect("the lookup ends")
            .unwrap()
    }
}

async fn drive(mut swarm: Swarm<KadPeerBehaviour>, mut cmds: mpsc::Receiver<Cmd>) {
    let mut finds: Vec<(kad::QueryId, Vec<PeerId>, oneshot::Sender<Vec<PeerId>>)> = Vec::new();
    let mut puts: Vec<(kad::QueryId, oneshot::Sender<bool>)> = Vec::new();
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(KadPeerBehaviourEvent::Names(
                    request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    },
                )) = ev
                {
                    let b = swarm.behaviour_mut();
                    let record = request
                        .name
                        .parse::<cairn_names::Name>()
                        .ok()
                        .and_then(|n| b.kad.store_mut().get(&cairn_net::dht::records::key_of(&n)))
                        .map(|r| cairn_names::record::to_base64(&r.value));
                    let _ = b.names.send_response(channel, cairn_net::dht::ask::Answer { record });
                    continue;
                }
                if let SwarmEvent::Behaviour(KadPeerBehaviourEvent::Kad(
                    kad::Event::OutboundQueryProgressed { id, result, step, .. },
                )) = ev
                {
                    if let Some(i) = puts.iter().position(|(q, _)| *q == id) {
                        if step.last {
                            let ok = matches!(result, QueryResult::PutRecord(Ok(_)));
                            let _ = puts.swap_remove(i).1.send(ok);
                        }
                        continue;
                    }
                    if let Some(i) = finds.iter().position(|(q, _, _)| *q == id) {
                        if let QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders {
                            providers,
                            ..
                        })) = result
                        {
                            finds[i].1.extend(providers);
                        }
                        if step.last {
                            let (_, found, tx) = finds.swap_remove(i);
                            let _ = tx.send(found);
                        }
                    }
                }
            }
            c = cmds.recv() => match c {
                Some(Cmd::Dial(a)) => { let _ = swarm.dial(a); }
                Some(Cmd::AddAddress(p, a)) => { swarm.behaviour_mut().kad.add_address(&p, a); }
                Some(Cmd::Provide(k)) => { let _ = swarm.behaviour_mut().kad.start_providing(k); }
                Some(Cmd::PutTo(r, p)) => {
                    swarm.behaviour_mut().kad.put_record_to(r, std::iter::once(p), Quorum::One);
                }
                Some(Cmd::PutWait(r, p, tx)) => {
                    let id = swarm.behaviour_mut().kad.put_record_to(r, std::iter::once(p), Quorum::One);
                    puts.push((id, tx));
                }
                Some(Cmd::Hold(r)) => { let _ = swarm.behaviour_mut().kad.store_mut().put(r); }
                Some(Cmd::Find(k, tx)) => {
                    let id = swarm.behaviour_mut().kad.get_providers(k);
                    finds.push((id, Vec::new(), tx));
                }
                None => return,
            },
        }
    }
}

/// A TCP listener that accepts every connection and never says a word: a dial to it hangs
/// in its handshake, holding a descriptor, until the dialler gives up. Counts connections.
struct Tarpit {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Tarpit {
    fn start() -> Tarpit {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming().flatten() {
                n.fetch_add(1, Ordering::Relaxed);
                held.push(s);
                // Read whatever comes, now and then, so the kernel buffers never fill; keep
                // the connections open.
                if held.len() % 64 == 0 {
                    held.retain_mut(|s| {
                        let _ = s.set_nonblocking(true);
                        let mut buf = [0u8; 4096];
                        !matches!(s.read(&mut buf), Ok(0))
                    });
                }
            }
        });
        Tarpit { port, accepted }
    }
}

/// Lookups answered with 50,000 providers (a 3 MB answer, over the 256 KiB cairn reads) and
/// with 3,500 (an answer it reads), each provider "at" a tarpit: the daemon takes twenty a
/// block, dials at most its limit at once, and its descriptors stay within bounds; the mount
/// keeps reading local files meanwhile.
#[test]
fn fifty_thousand_providers_do_not_start_a_dial_storm() {
    let tarpit = Tarpit::start();
    let at: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", tarpit.port)
        .parse()
        .unwrap();
    let lies = |what: &[u8], n: usize| {
        let cid = Cid::new_v1(0x55, HashAlg::Sha2_256.digest(what));
        let key = RecordKey::new(&cid.hash().to_bytes());
        let records: Vec<ProviderRecord> = (0..n)
            .map(|_| ProviderRecord::new(key.clone(), PeerId::random(), vec![at.clone()]))
            .collect();
        (cid, records)
    };
    let (huge, mut records) = lies(b"everyone has this, they say", 50_000);
    let (many, more) = lies(b"thousands have this, they say", 3_500);
    records.extend(more);
    // Both DHTs' protocols: the public one must ignore it (loopback), the LAN one not.
    let liar = KadPeer::start_on(&[LAN, PUBLIC], records);

    let root = Root::new();
    let f = root.dir.path().join("local");
    std::fs::write(&f, b"local and quick\n").unwrap();
    let local = root.add_q(&[f.to_str().unwrap()]);
    let d = Daemon::start(
        &root,
        true,
        &[
            "--bootstrap",
            &liar.addr.to_string(),
            "--fetch-timeout",
            "20",
        ],
    );
    eventually(15, "the daemon knows the DHT peer", || {
        d.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 1
    });
    let pid = d.pid();
    let fds_before = fd_count(pid);
    let m = d.mountpoint.clone().unwrap();
    let waiting: Vec<_> = [huge, many]
        .into_iter()
        .map(|c| {
            let m2 = m.clone();
            std::thread::spawn(move || std::fs::read(m2.join(c.to_string())))
        })
        .collect();
    // Watch until ten seconds after the first providers came (at most a minute).
    let t = Instant::now();
    let mut max_fds = 0;
    let mut slowest_local = Duration::ZERO;
    let mut found_at: Option<Instant> = None;
    while t.elapsed() < Duration::from_secs(60)
        && found_at.is_none_or(|f| f.elapsed() < Duration::from_secs(10))
    {
        max_fds = max_fds.max(fd_count(pid));
        let r = Instant::now();
        assert_eq!(std::fs::read(m.join(&local)).unwrap(), b"local and quick\n");
        slowest_local = slowest_local.max(r.elapsed());
        if found_at.is_none() && d.stats()["dht"]["providers_found"].as_u64() > Some(0) {
            found_at = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let dht = d.stats()["dht"].clone();
    let accepted = tarpit.accepted.load(Ordering::Relaxed);
    eprintln!(
        "fds {fds_before} -> max {max_fds}; tarpit connections {accepted}; slowest local read \
         {slowest_local:?}; {dht}"
    );
    assert!(dht["lookups"].as_u64().unwrap() >= 1, "{dht}");
    let found = dht["providers_found"].as_u64().unwrap();
    assert!(
        (1..=20 * dht["lookups"].as_u64().unwrap()).contains(&found),
        "{found} providers taken\n{}",
        d.log()
    );
    // 64 dials at once, each to at most 8 addresses at a time, and a margin for the rest.
    assert!(
        max_fds <= fds_before + 64 * 8 + 64,
        "descriptors went from {fds_before} to {max_fds}"
    );
    assert!(accepted <= 2_000, "{accepted} dials reached the tarpit");
    assert!(slowest_local < Duration::from_secs(2), "{slowest_local:?}");
    for w in waiting {
        let _ = w.join();
    }
    drop(liar);
}

/// A provider record announced on the LAN DHT (with a loopback address) is served on the LAN
/// DHT and not on the public one.
#[test]
fn lan_records_stay_off_the_public_dht() {
    let root = Root::new();
    let d = Daemon::start(&root, false, &[]);
    let daddr: Multiaddr = d.addr.parse().unwrap();
    let dpeer: PeerId = d.peer.parse().unwrap();
    let key = RecordKey::new(&HashAlg::Sha2_256.digest(b"a block on the LAN").to_bytes());
    let announcer = KadPeer::start(LAN, Vec::new());
    announcer.cmd(Cmd::AddAddress(dpeer, daddr.clone()));
    announcer.cmd(Cmd::Dial(daddr.clone()));
    announcer.cmd(Cmd::Provide(key.clone()));
    eventually(20, "the daemon keeps the record", || {
        d.stats()["dht"]["records_kept"].as_u64().unwrap() >= 1
    });
    let lan_asker = KadPeer::start(LAN, Vec::new());
    lan_asker.cmd(Cmd::AddAddress(dpeer, daddr.clone()));
    assert!(
        lan_asker.find(key.clone()).contains(&announcer.peer),
        "the LAN DHT serves the record"
    );
    let public_asker = KadPeer::start(PUBLIC, Vec::new());
    public_asker.cmd(Cmd::AddAddress(dpeer, daddr));
    let found = public_asker.find(key);
    assert!(
        !found.contains(&announcer.peer),
        "a LAN record was served on the public DHT: {found:?}"
    );
}

/// An IPNS record of `name` under its DHT key, as bytes.
pub(crate) fn ipns(name: &cairn_names::Name, value: Vec<u8>) -> Record {
    let mut key = b"/ipns/".to_vec();
    key.extend_from_slice(&name.to_bytes());
    Record::new(RecordKey::new(&key), value)
}

/// Hostile IPNS records against a daemon, by PUT_VALUE and as GET_VALUE answers: forged,
/// signed by another key, oversized, malformed, expired and older. None is kept or served;
/// the daemon keeps answering with the newest valid record, and each sender of bad records
/// is charged for them (the PUT peer until it is cut off), but not for expired or older
/// ones, which honest peers with other clocks or older copies send too.
#[test]
fn hostile_ipns_records_are_neither_kept_nor_served() {
    use cairn_names::{record, Name};
    let root = Root::new();
    let d = Daemon::start(&root, false, &[]);
    let daddr: Multiaddr = d.addr.parse().unwrap();
    let dpeer: PeerId = d.peer.parse().unwrap();
    let owner = Keypair::generate_ed25519();
    let name = Name::of(&owner.public());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let hour = 3_600_000_000_000i128;
    let sign = |k: &Keypair, v: &str, seq, validity| record::sign(k, v, seq, validity, 1).unwrap();
    let good = sign(&owner, "/ipfs/bafkqac3imvwgy3zao5xxe3debi", 5, now + hour);

    let putter = KadPeer::start(LAN, Vec::new());
    putter.cmd(Cmd::AddAddress(dpeer, daddr.clone()));
    putter.cmd(Cmd::Dial(daddr.clone()));
    putter.cmd(Cmd::PutTo(ipns(&name, good.clone()), dpeer));
    eventually(20, "the daemon keeping the good record", || {
        d.stats()["dht"]["names_kept"].as_u64().unwrap() >= 1
    });
    let resolved = || {
        let out = root.output(&["name", "resolve", "--offline", "--json", &name.to_string()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(resolved()["sequence"], 5);

    let mut forged = sign(&owner, "/ipfs/bafkqac3imvwgy3zao5xxe3debi", 9, now + hour);
    let n = forged.len();
    forged[n - 4] ^= 1;
    let stranger = Keypair::generate_ed25519();
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("older", sign(&owner, "/ipfs/bafkqaaa", 3, now + hour)),
        ("forged", forged.clone()),
        (
            "another key",
            sign(&stranger, "/ipfs/bafkqaaa", 50, now + hour),
        ),
        ("expired", sign(&owner, "/ipfs/bafkqaaa", 60, now - hour)),
        ("oversized", vec![0x0a; 11 << 10]),
        ("malformed", b"\x08\x01 not a record".to_vec()),
    ];
    for (_, bytes) in &bad {
        putter.cmd(Cmd::PutTo(ipns(&name, bytes.clone()), dpeer));
    }
    // The four no honest peer sends are counted (and charged); the older and the expired
    // ones (clocks differ) are only dropped.
    eventually(20, "the daemon refusing the four bad records", || {
        d.stats()["dht"]["names_refused"].as_u64().unwrap() >= 4
    });
    let r = resolved();
    assert_eq!(r["sequence"], 5, "{r}");
    assert_eq!(r["record"], record::to_base64(&good), "{r}");
    let row = ledger_row(&root, &putter.peer.to_string());
    assert!(row["bad_records"].as_u64().unwrap() >= 4, "{row}");

    // A peer answering lookups with a forged record of a higher sequence: refused, charged,
    // and the daemon still answers the good record.
    let liar = KadPeer::start(LAN, Vec::new());
    liar.cmd(Cmd::Hold(ipns(&name, forged)));
    liar.cmd(Cmd::AddAddress(dpeer, daddr.clone()));
    liar.cmd(Cmd::Dial(daddr));
    eventually(20, "the daemon's DHT knowing the liar", || {
        d.stats()["dht"]["routing_peers"].as_u64().unwrap() >= 1
    });
    let before = d.stats()["dht"]["names_refused"].as_u64().unwrap();
    let out = root.output(&["name", "resolve", "--json", &name.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["sequence"], 5, "{r}");
    eventually(20, "the liar charged", || {
        d.stats()["dht"]["names_refused"].as_u64().unwrap() > before
            && ledger_row(&root, &liar.peer.to_string())["bad_records"]
                .as_u64()
                .unwrap_or(0)
                >= 1
    });
    // With only the liar to ask, a lookup past this node's own record finds nothing valid:
    // the node answers with the record it holds, saying the network did not confirm it.
    let out = root.output(&["name", "resolve", "--nocache", &name.to_string()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/ipfs/bafkqac3imvwgy3zao5xxe3debi\n"
    );
    assert!(said.contains("could not confirm"), "{said}");

    // A node that holds nothing and has only the liar to ask, directly (its DHT is off):
    // the forged record is refused and charged, and "no valid record" says that something
    // came and why it was refused (still `--json`'s exit 4: a forgery proves nothing, and
    // failing on one would let any peer stop a name's first publication).
    let other = Root::new();
    let _d2 = Daemon::start(
        &other,
        false,
        &["--no-dht", "--bootstrap", &liar.addr.to_string()],
    );
    let mut said = String::new();
    eventually(20, "the forged record refused", || {
        let out = other.output(&["name", "resolve", "--json", &name.to_string()]);
        said = String::from_utf8_lossy(&out.stderr).into_owned();
        out.status.code() == Some(4) && said.contains("1 record refused (1 forged")
    });
    assert!(said.contains("does not verify"), "{said}");
    eventually(20, "the liar charged by the node it answered", || {
        ledger_row(&other, &liar.peer.to_string())["bad_records"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
}

/// A flood of 600 valid records from throwaway keys, put at a daemon as fast as a peer can:
/// past 100 a second they are refused unchecked and the sender charged, at most 64 of its
/// names are kept, and the daemon serves a 4 MiB file to another node meanwhile.
#[test]
fn a_put_flood_is_cut_and_blocks_are_still_served() {
    use cairn_names::{record, Name};
    let root = Root::new();
    let f = root.dir.path().join("served");
    let data = crate::network::random_bytes(4 << 20, 21);
    std::fs::write(&f, &data).unwrap();
    let cid = root.add_q(&[f.to_str().unwrap()]);
    let d = Daemon::start(&root, false, &[]);
    let daddr: Multiaddr = d.addr.parse().unwrap();
    let dpeer: PeerId = d.peer.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let records: Vec<Record> = (0..600)
        .map(|_| {
            let k = Keypair::generate_ed25519();
            let bytes = record::sign(&k, "/ipfs/bafkqaaa", 1, now + 3_600_000_000_000, 1).unwrap();
            ipns(&Name::of(&k.public()), bytes)
        })
        .collect();
    let flooder = KadPeer::start(LAN, Vec::new());
    flooder.cmd(Cmd::AddAddress(dpeer, daddr.clone()));
    flooder.cmd(Cmd::Dial(daddr));
    for r in records {
        flooder.cmd(Cmd::PutTo(r, dpeer));
    }
    // Meanwhile another node fetches a file from the daemon.
    let other = Root::new();
    let out = other.output(&["fetch", &cid, "--bootstrap", &d.addr, "--no-mdns"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        crate::util::cat_sha(&other, &cid),
        crate::util::cat_sha(&root, &cid)
    );
    eventually(30, "the flooder charged", || {
        ledger_row(&root, &flooder.peer.to_string())["malformed_messages"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
    let dht = &d.stats()["dht"];
    assert!(dht["names_held"].as_u64().unwrap() <= 64, "{dht}");
    assert!(dht["names_refused"].as_u64().unwrap() >= 1, "{dht}");
}
