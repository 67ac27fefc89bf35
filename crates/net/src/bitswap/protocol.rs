//! The Bitswap protocol names and the upgrade that negotiates one of them.
//!
//! Inbound, every name is accepted; outbound, multistream-select offers them in order of
//! preference (1.2.0 first), so one open finds the best version the peer speaks. Once a
//! connection knows it, its streams offer that one name only, which the swarm negotiates
//! lazily (`V1Lazy`, as go-libp2p does): the message follows the name at once instead of a
//! round trip later. Bitswap opens a stream per message, so on a link with 20 ms of round
//! trip that is 20 ms off every message. Helia
//! speaks only 1.2.0 and sends wants only to peers whose identify lists it: the handler's
//! listen protocols are what identify reports, so all four are registered from the start.

use std::{
    convert::Infallible,
    future::{ready, Ready},
};

use libp2p::{
    core::{InboundUpgrade, OutboundUpgrade, UpgradeInfo},
    Stream, StreamProtocol,
};

use super::wire::Version;

pub const BITSWAP_120: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
pub const BITSWAP_110: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.1.0");
pub const BITSWAP_100: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.0.0");
pub const BITSWAP: StreamProtocol = StreamProtocol::new("/ipfs/bitswap");

/// In order of preference.
pub const PROTOCOLS: [StreamProtocol; 4] = [BITSWAP_120, BITSWAP_110, BITSWAP_100, BITSWAP];

/// The wire format a negotiated protocol name implies.
pub fn version(p: &StreamProtocol) -> Version {
    if *p == BITSWAP_120 {
        Version::V120
    } else if *p == BITSWAP_110 {
        Version::V110
    } else {
        Version::V100
    }
}

/// The protocol name of a version.
pub fn name(v: Version) -> StreamProtocol {
    match v {
        Version::V120 => BITSWAP_120,
        Version::V110 => BITSWAP_110,
        Version::V100 => BITSWAP_100,
    }
}

/// Negotiates a Bitswap version (any, or the one the peer is known to speak); yields the
/// stream and the version agreed on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upgrade(pub Option<Version>);

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = std::vec::IntoIter<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        match self.0 {
            Some(v) => vec![name(v)].into_iter(),
            None => PROTOCOLS.to_vec().into_iter(),
        }
    }
}

impl InboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, Version);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, stream: Stream, info: StreamProtocol) -> Self::Future {
        ready(Ok((stream, version(&info))))
    }
}

impl OutboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, Version);
    type Error = Infallible;
    type Future = Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, stream: Stream, info: StreamProtocol) -> Self::Future {
        ready(Ok((stream, version(&info))))
    }
}
