//! `/cairn/history/2.0.0`: cairn nodes ask each other for shared history, the signed
//! statements of what others gave them ([`crate::reputation`]). One request, one response:
//! the request is empty; the response ([`Answer`]) is the node's own [`Signed`] batch (at
//! most 64 statements) and up to [`MAX_RELAYED`] batches of other issuers as they signed
//! them, 256 KiB at most in all (the codec's bound). A node asks each peer that lists the
//! protocol when identify tells it so, and again every [`ASK_EVERY`]; it answers each peer at
//! most twice per [`ASK_EVERY`]. kubo and Helia do not speak it; they are judged by the local
//! ledger and the stranger policy alone.
//!
//! Version 2 signs each batch with the time it was signed (its window) and relays others'
//! batches; version 1 nodes and this one do not exchange history.

use std::time::Duration;

use libp2p::{request_response, StreamProtocol};
use serde::{Deserialize, Serialize};

pub use crate::reputation::{Signed, MAX_RELAYED};
use crate::{
    ledger::{now_ms, Ledger},
    reputation::{Statement, MAX_STATEMENTS},
};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/history/2.0.0");
/// How often a peer's history is asked for again.
pub const ASK_EVERY: Duration = Duration::from_secs(60);
/// The largest answer taken.
pub const MAX_ANSWER: u64 = 256 << 10;

/// "Your history, please."
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ask {}

/// A node's own statements, and others' it passes on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub own: Option<Signed>,
    #[serde(default)]
    pub relayed: Vec<Signed>,
}

pub type Behaviour = request_response::json::Behaviour<Ask, Answer>;

pub fn behaviour() -> Behaviour {
    let codec = request_response::json::codec::Codec::default()
        .set_request_size_maximum(1 << 10)
        .set_response_size_maximum(MAX_ANSWER);
    request_response::Behaviour::with_codec(
        codec,
        [(PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
    )
}

/// What we say others gave us: our largest givers lately, signed now.
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
    Signed::sign(key, now, rows)
}
