//! The Bitswap protocol names and the upgrade that negotiates one of them.
//!
//! Inbound, every name is accepted; outbound, multistream-select offers them in order of
//! preference (1.2.0 first), so one open finds the best version the peer speaks. Helia
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

/// Negotiates any Bitswap version; yields the stream and the version agreed on.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upgrade;

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = std::array::IntoIter<StreamProtocol, 4>;

    fn protocol_info(&self) -> Self::InfoIter {
        PROTOCOLS.into_iter()
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
