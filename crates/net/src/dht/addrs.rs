//! Which addresses a DHT may make us dial or pass on, and how many.
//!
//! The public DHT is the internet's: an address learned there that points into a private
//! range (10/8, 192.168/16, loopback, link-local, ...) is either useless or someone's way of
//! making us scan our own network, so it is never dialled, kept in the routing table, or
//! stored in a provider record there. The LAN DHT exists for exactly those addresses. Either
//! way a peer gets at most [`MAX_ADDRS_PER_PEER`] addresses: one DHT answer can name
//! thousands for one peer.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    task::{Context, Poll},
};

use libp2p::{
    core::{transport::PortUse, Endpoint},
    multiaddr::Protocol,
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
    },
    Multiaddr, PeerId,
};

/// Addresses tried, stored or passed on for one peer.
pub const MAX_ADDRS_PER_PEER: usize = 16;
/// The longest address kept, in bytes (an IPv6 address, a port, QUIC and a peer ID take
/// under 80).
pub const MAX_ADDR_LEN: usize = 128;

/// Which DHT an address came from, and so which addresses it may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `/ipfs/kad/1.0.0`: globally routable IP addresses only.
    Public,
    /// `/ipfs/lan/kad/1.0.0`: any IP address.
    Lan,
}

impl Scope {
    /// True if an address learned in this DHT may be used: an IP address and a TCP port or a
    /// UDP port with QUIC v1, optionally `/p2p/…`, nothing else (no DNS names, relays or
    /// unknown transports, which also bounds its length: see [`MAX_ADDR_LEN`]); and, in the
    /// public DHT, a global IP address.
    pub fn allows(self, addr: &Multiaddr) -> bool {
        if addr.len() > MAX_ADDR_LEN {
            return false;
        }
        let mut parts = addr.iter();
        let ip_ok = match parts.next() {
            Some(Protocol::Ip4(ip)) => self == Scope::Lan || is_global_v4(ip),
            Some(Protocol::Ip6(ip)) => self == Scope::Lan || is_global_v6(ip),
            _ => false,
        };
        let transport_ok = match parts.next() {
            Some(Protocol::Tcp(_)) => true,
            Some(Protocol::Udp(_)) => matches!(parts.next(), Some(Protocol::QuicV1)),
            _ => false,
        };
        let rest_ok = match parts.next() {
            None => true,
            Some(Protocol::P2p(_)) => parts.next().is_none(),
            Some(_) => false,
        };
        ip_ok && transport_ok && rest_ok
    }

    /// The addresses of `addrs` this scope allows, each once, at most
    /// [`MAX_ADDRS_PER_PEER`].
    pub fn filter(self, addrs: impl IntoIterator<Item = Multiaddr>) -> Vec<Multiaddr> {
        let mut out: Vec<Multiaddr> = Vec::new();
        for a in addrs {
            if out.len() >= MAX_ADDRS_PER_PEER {
                break;
            }
            if self.allows(&a) && !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }
}

/// True for an IPv4 address reachable across the internet.
pub fn is_global_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        // 100.64/10: carrier-grade NAT
        || (a == 100 && (64..128).contains(&b))
        // 192.0.0/24: protocol assignments; 198.18/15: benchmarking
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b)))
}

/// True for an IPv6 address reachable across the internet.
pub fn is_global_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_global_v4(v4);
    }
    let s = ip.segments();
    !(
        ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        // 2001:db8::/32 documentation
        || (s[0] == 0x2001 && s[1] == 0x0db8)
        // ::ffff:0:0/96 handled above; 64:ff9b::/96 is translation, allowed.
    )
}

/// A behaviour (a Kademlia) whose dial addresses are passed through [`Scope::filter`]: the
/// addresses it offers for any peer the swarm dials (its routing table's, and those its
/// queries were told) are cut to what its scope allows, at most [`MAX_ADDRS_PER_PEER`]. All
/// else is the inner behaviour's.
pub struct Filtered<B> {
    pub inner: B,
    scope: Scope,
}

impl<B> Filtered<B> {
    pub fn new(inner: B, scope: Scope) -> Filtered<B> {
        Filtered { inner, scope }
    }

    pub fn scope(&self) -> Scope {
        self.scope
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Filtered<B> {
    type ConnectionHandler = B::ConnectionHandler;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(id, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        let offered = self
            .inner
            .handle_pending_outbound_connection(id, peer, addresses, role)?;
        Ok(self.scope.filter(offered))
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event)
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner.on_connection_handler_event(peer, id, event)
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_dht_keeps_only_global_addresses() {
        let ok = [
            "/ip4/8.8.8.8/tcp/4001",
            "/ip4/100.128.0.1/tcp/1",
            "/ip6/2a00:1450::1/udp/4001/quic-v1",
            "/ip4/8.8.8.8/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
        ];
        let private = [
            "/ip4/127.0.0.1/tcp/4001",
            "/ip4/10.1.2.3/tcp/4001",
            "/ip4/172.16.0.1/tcp/1",
            "/ip4/192.168.1.1/tcp/1",
            "/ip4/169.254.1.1/tcp/1",
            "/ip4/100.64.0.1/tcp/1",
            "/ip4/0.0.0.0/tcp/1",
            "/ip4/255.255.255.255/tcp/1",
            "/ip4/224.0.0.1/udp/1/quic-v1",
            "/ip4/192.0.2.7/tcp/1",
            "/ip6/::1/tcp/1",
            "/ip6/fd00::1/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/ip6/::ffff:10.0.0.1/tcp/1",
        ];
        let long_tail = format!("/ip4/8.8.8.8/tcp/1/dns/{}", "x".repeat(200));
        let other = [
            "/dns4/example.com/tcp/1",
            "/p2p-circuit",
            "/memory/1",
            "/ip4/8.8.8.8",
            "/ip4/8.8.8.8/udp/1",
            "/ip4/8.8.8.8/tcp/1/ws",
            long_tail.as_str(),
        ];
        for a in ok {
            let a: Multiaddr = a.parse().unwrap();
            assert!(Scope::Public.allows(&a) && Scope::Lan.allows(&a), "{a}");
        }
        for a in private {
            let a: Multiaddr = a.parse().unwrap();
            assert!(!Scope::Public.allows(&a), "{a}");
            assert!(Scope::Lan.allows(&a), "{a}");
        }
        for a in other {
            let a: Multiaddr = a.parse().unwrap();
            assert!(!Scope::Public.allows(&a) && !Scope::Lan.allows(&a), "{a}");
        }
    }

    #[test]
    fn a_peer_gets_at_most_sixteen_addresses() {
        let many = (0..1000u16).map(|p| format!("/ip4/127.0.0.1/tcp/{p}").parse().unwrap());
        let kept = Scope::Lan.filter(many.chain(["/ip4/127.0.0.1/tcp/0".parse().unwrap()]));
        assert_eq!(kept.len(), MAX_ADDRS_PER_PEER);
        assert!(Scope::Public
            .filter((0..100u16).map(|p| format!("/ip4/10.0.0.1/tcp/{p}").parse().unwrap()))
            .is_empty());
    }
}
