//! A libp2p peer of the tests' own that speaks Bitswap only as far as it chooses to: TCP,
//! noise, yamux, identify (so a daemon sees an ordinary peer) and `libp2p-stream` for raw
//! Bitswap streams, on which it writes whatever bytes it likes and reads what the daemon
//! sends. It can also push identify updates naming any addresses it likes.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use cairn_net::bitswap::{
    protocol::{BITSWAP, BITSWAP_100, BITSWAP_110, BITSWAP_120},
    wire::{self, Message, Presence, Version, WantType},
};
use cairn_store::{codec::pb::put_varint, Cid};
use libp2p::{
    futures::{AsyncReadExt, AsyncWriteExt, StreamExt},
    identify,
    identity::Keypair,
    noise,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux, Multiaddr, PeerId, Stream, Swarm,
};
use tokio::sync::mpsc;

use crate::{peers::Daemon, util::eventually};

/// What the peer's swarm saw, and every message the daemon sent it.
#[derive(Default)]
pub struct Seen {
    /// Connections open now.
    pub open: usize,
    pub established: usize,
    pub dial_errors: Vec<String>,
    pub messages: Vec<Message>,
    /// Blocks the peer says HAVE to as soon as it is asked for them.
    pub claims: HashSet<Vec<u8>>,
}

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
struct PeerBehaviour {
    identify: identify::Behaviour,
    streams: libp2p_stream::Behaviour,
}

enum Cmd {
    Dial(Multiaddr),
    /// Make these the external addresses and push identify to the peer.
    Push(Vec<Multiaddr>, PeerId),
}

/// A libp2p node that speaks Bitswap only as far as it chooses to.
pub struct RawPeer {
    pub rt: tokio::runtime::Runtime,
    pub peer: PeerId,
    pub control: libp2p_stream::Control,
    cmds: mpsc::Sender<Cmd>,
    seen: Arc<Mutex<Seen>>,
}

impl RawPeer {
    pub fn start() -> RawPeer {
        RawPeer::start_with(Keypair::generate_ed25519())
    }

    /// A peer with this identity (to come back as the same peer).
    pub fn start_with(key: Keypair) -> RawPeer {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let peer = key.public().to_peer_id();
        let streams = libp2p_stream::Behaviour::new();
        let mut control = streams.new_control();
        // Registered before any connection, so identify lists them and the daemon counts
        // this peer as one that speaks Bitswap.
        let incoming: Vec<_> = [BITSWAP_120, BITSWAP_110, BITSWAP_100, BITSWAP]
            .into_iter()
            .map(|p| control.accept(p).unwrap())
            .collect();
        let swarm = tcp_swarm(&rt, key, |key| PeerBehaviour {
            identify: identify::Behaviour::new(
                identify::Config::new("/ipfs/0.1.0".into(), key.public())
                    .with_agent_version("hostile-peer/0".into()),
            ),
            streams,
        });
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (cmds, cmd_rx) = mpsc::channel(16);
        rt.spawn(drive(swarm, cmd_rx, seen.clone()));
        rt.spawn(read_inbound(
            futures::stream::select_all(incoming),
            seen.clone(),
            control.clone(),
        ));
        RawPeer {
            rt,
            peer,
            control,
            cmds,
            seen,
        }
    }

    pub fn seen<R>(&self, f: impl FnOnce(&Seen) -> R) -> R {
        f(&self.seen.lock().unwrap())
    }

    pub fn dial(&self, addr: &str) {
        let addr: Multiaddr = addr.parse().unwrap();
        self.rt.block_on(self.cmds.send(Cmd::Dial(addr))).unwrap();
    }

    /// Dials the daemon and waits for the connection; the daemon's peer ID.
    pub fn connect(&self, v: &Daemon) -> PeerId {
        self.dial(&v.addr);
        eventually(10, "the raw peer connects", || self.is_connected());
        v.peer.parse().unwrap()
    }

    pub fn is_connected(&self) -> bool {
        self.seen(|s| s.open > 0)
    }

    /// Tells `to`, by an identify push, that this peer listens at `addrs`.
    pub fn push_addresses(&self, to: PeerId, addrs: Vec<Multiaddr>) {
        self.rt
            .block_on(self.cmds.send(Cmd::Push(addrs, to)))
            .unwrap();
    }

    /// A new Bitswap 1.2.0 stream to `to`.
    pub fn open(&self, to: PeerId) -> Result<Stream, String> {
        let mut c = self.control.clone();
        self.rt
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(5), c.open_stream(to, BITSWAP_120)).await
            })
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    /// Writes `bytes` as they are on a new stream, and closes it.
    pub fn send_raw(&self, to: PeerId, bytes: &[u8]) -> Result<(), String> {
        let mut s = self.open(to)?;
        self.rt.block_on(async {
            s.write_all(bytes).await.map_err(|e| e.to_string())?;
            s.close().await.map_err(|e| e.to_string())?;
            // The daemon closes its side of our streams at once; drop ours only after that,
            // or it would be reset before the daemon read it.
            drain(&mut s).await;
            Ok(())
        })
    }

    pub fn send(&self, to: PeerId, msg: &Message) -> Result<(), String> {
        self.send_raw(to, &frame(&msg.encode(Version::V120)))
    }

    /// Waits until the daemon has sent us a want for `cid` (of type `want_type`, if given).
    pub fn wait_for_want(&self, cid: &Cid, want_type: Option<WantType>) {
        eventually(10, &format!("a {want_type:?} want for {cid}"), || {
            self.seen(|s| {
                s.messages.iter().flat_map(|m| &m.wants).any(|e| {
                    e.cid.hash() == cid.hash()
                        && !e.cancel
                        && want_type.is_none_or(|t| e.want_type == t)
                })
            })
        });
    }

    /// Says HAVE, at once, whenever the daemon asks for `cid`.
    pub fn claim(&self, cid: &Cid) {
        self.seen
            .lock()
            .unwrap()
            .claims
            .insert(cid.hash().to_bytes());
    }

    /// True if the daemon sent us a want-block for `cid`.
    pub fn asked_block(&self, cid: &Cid) -> bool {
        self.seen(|s| {
            s.messages
                .iter()
                .flat_map(|m| &m.wants)
                .any(|e| e.cid.hash() == cid.hash() && !e.cancel && e.want_type == WantType::Block)
        })
    }

    /// Dials the daemon again and checks it is refused: the dial fails, or the connection is
    /// closed at once and no Bitswap stream can be opened.
    pub fn assert_refused(&self, v: &Daemon) {
        let victim: PeerId = v.peer.parse().unwrap();
        let (established, errors) = self.seen(|s| (s.established, s.dial_errors.len()));
        self.dial(&v.addr);
        eventually(10, "the daemon refuses the redial", || {
            self.seen(|s| {
                s.dial_errors.len() > errors || (s.established > established && s.open == 0)
            })
        });
        std::thread::sleep(Duration::from_millis(500));
        assert!(!self.is_connected(), "the daemon let the offender back in");
        assert!(self.open(victim).is_err(), "a stream to the daemon opened");
    }
}

/// A swarm of the tests' own on `rt`: TCP, noise and yamux, `key`'s identity, the behaviour
/// `make` builds, and connections that stay open while idle.
pub fn tcp_swarm<B: NetworkBehaviour>(
    rt: &tokio::runtime::Runtime,
    key: Keypair,
    make: impl FnOnce(&Keypair) -> B,
) -> Swarm<B> {
    let _rt = rt.enter();
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| make(key))
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build()
}

/// The peer's swarm: dials and pushes on request, and notes connections opening and closing.
async fn drive(
    mut swarm: Swarm<PeerBehaviour>,
    mut cmds: mpsc::Receiver<Cmd>,
    seen: Arc<Mutex<Seen>>,
) {
    loop {
        tokio::select! {
            ev = swarm.select_next_some() => {
                let mut s = seen.lock().unwrap();
                match ev {
                    SwarmEvent::ConnectionEstablished { .. } => {
                        s.open += 1;
                        s.established += 1;
                    }
                    SwarmEvent::ConnectionClosed { .. } => s.open = s.open.saturating_sub(1),
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        s.dial_errors.push(error.to_string());
                    }
                    _ => {}
                }
            }
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Dial(addr)) => {
                    if let Err(e) = swarm.dial(addr) {
                        seen.lock().unwrap().dial_errors.push(e.to_string());
                    }
                }
                Some(Cmd::Push(addrs, to)) => {
                    // Only the new ones: an identify message holds 4 KiB.
                    let old: Vec<Multiaddr> = swarm.external_addresses().cloned().collect();
                    for a in old {
                        swarm.remove_external_address(&a);
                    }
                    for a in addrs {
                        swarm.add_external_address(a);
                    }
                    swarm.behaviour_mut().identify.push([to]);
                }
                None => return,
            },
        }
    }
}

/// Reads every stream the daemon opens to us, keeping the messages; wants for blocks the
/// peer claims are answered HAVE at once.
async fn read_inbound(
    mut incoming: impl futures::Stream<Item = (PeerId, Stream)> + Unpin,
    seen: Arc<Mutex<Seen>>,
    control: libp2p_stream::Control,
) {
    while let Some((peer, mut stream)) = incoming.next().await {
        let (seen, mut control) = (seen.clone(), control.clone());
        tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Ok(true) = wire::read_frame(&mut stream, &mut buf).await {
                if let Ok(m) = Message::decode(&Bytes::copy_from_slice(&buf)) {
                    let haves: Vec<(Cid, Presence)> = {
                        let mut s = seen.lock().unwrap();
                        let haves = m
                            .wants
                            .iter()
                            .filter(|e| !e.cancel && s.claims.contains(&e.cid.hash().to_bytes()))
                            .map(|e| (e.cid, Presence::Have))
                            .collect();
                        s.messages.push(m);
                        haves
                    };
                    if !haves.is_empty() {
                        let msg = Message {
                            presences: haves,
                            ..Default::default()
                        };
                        if let Ok(mut out) = control.open_stream(peer, BITSWAP_120).await {
                            let _ = out.write_all(&frame(&msg.encode(Version::V120))).await;
                            let _ = out.close().await;
                            drain(&mut out).await;
                        }
                    }
                }
            }
            let _ = stream.close().await;
        });
    }
}

/// Reads `s` until the other side closes it (at most 5 s): a stream dropped before the
/// daemon read what was written on it would be reset, and the bytes lost.
pub async fn drain(s: &mut Stream) {
    let mut sink = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(n) = s.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// `msg` with its length in front, as Bitswap frames it.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 10);
    put_varint(&mut out, msg.len() as u64);
    out.extend_from_slice(msg);
    out
}
