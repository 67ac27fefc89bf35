//! `/cairn/history/1.0.0`: cairn nodes ask each other for their signed statements of what
//! others gave them ([`crate::reputation`]). One request, one response: the request is
//! empty, the response one [`Signed`] batch of at most 64 statements (its size bounded by
//! the codec). A node asks each peer that lists the protocol when identify tells it so, and
//! again every [`ASK_EVERY`]. kubo and Helia do not speak it; they are judged by the local
//! ledger and the stranger policy alone.

use std::time::Duration;

use libp2p::{request_response, StreamProtocol};
use serde::{Deserialize, Serialize};

pub use crate::reputation::Signed;
use crate::{
    ledger::{now_ms, Ledger},
    reputation::{Statement, MAX_STATEMENTS},
};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/history/1.0.0");
/// How often a peer's statements are asked for again.
pub const ASK_EVERY: Duration = Duration::from_secs(60);

/// "Your statements, please."
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ask {}

pub type Behaviour = request_response::json::Behaviour<Ask, Signed>;

pub fn behaviour() -> Behaviour {
    let codec = request_response::json::codec::Codec::default()
        .set_request_size_maximum(1 << 10)
        .set_response_size_maximum(64 << 10);
    request_response::Behaviour::with_codec(
        codec,
        [(PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
    )
}

/// What we say others gave us: our largest givers lately, signed.
pub fn statements(ledger: &Ledger, key: &libp2p::identity::Keypair) -> Option<Signed> {
    let now = now_ms();
    let mut rows: Vec<Statement> = ledger
        .iter()
        .map(|(p, s)| Statement {
            subject: p.to_string(),
            bytes: s.recent_received.at(now).round() as u64,
            at_ms: now,
        })
        .filter(|s| s.bytes > 0)
        .collect();
    rows.sort_by_key(|s| std::cmp::Reverse(s.bytes));
    rows.truncate(MAX_STATEMENTS);
    Signed::sign(key, rows)
}
