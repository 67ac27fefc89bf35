//! `/cairn/name/1.0.0`: a name's record asked of connected cairn peers directly, beside the
//! DHT lookups. A peer that is no DHT server (a laptop behind NAT, a node with `dht =
//! false`) is reached this way, and so is a node whose DHT knows nobody yet; its answer is
//! checked as a DHT's is ([`super::ipns::check`]), and one no honest peer sends costs its
//! sender offence points.
//!
//! One request, the name as text; one response, the best record the peer holds (base64;
//! from its DHT stores: what it published, follows or was given) or none.
//!
//! | what | bound | past it |
//! |---|---|---|
//! | a request | 1 KiB (the codec) | the stream is closed |
//! | a response | 16 KiB (the codec; a record is at most 10 KiB, 13.7 KiB in base64) | the ask fails |
//! | peers asked per lookup | [`MAX_ASKED`] | the rest are not asked |
//! | asks in flight, in all | [`MAX_IN_FLIGHT`], each at most [`ASK_TIMEOUT`] | fewer peers are asked |
//! | asks one peer may make of us | [`ANSWERS_PER_SECOND`] a second | unanswered (not charged: an honest node's users decide how often it asks) |
//! | asks we make of one peer | [`ASKS_PER_SECOND`] a second | that peer is not asked |

use std::time::Duration;

use cairn_names::{record, Name};
use libp2p::{request_response, PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{
    ipns::{check, keep, Found, Rejects},
    Kad,
};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/name/1.0.0");
/// Peers asked directly in one lookup.
pub const MAX_ASKED: usize = 32;
/// Direct asks waiting for an answer, over all lookups.
pub const MAX_IN_FLIGHT: usize = 1024;
/// How long an ask waits for its answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Asks one peer may make of this node per second. Each is two map lookups and at most 14
/// KiB written; a resolver asks each peer once per lookup.
pub const ANSWERS_PER_SECOND: u32 = 100;
/// Asks this node makes of one peer per second, half of what a peer answers.
pub const ASKS_PER_SECOND: u32 = 50;

/// "Your record of this name, please."
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ask {
    pub name: String,
}

/// The best record held of the name asked for, base64, if any.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub record: Option<String>,
}

pub type Behaviour = request_response::json::Behaviour<Ask, Answer>;

pub fn behaviour() -> Behaviour {
    let codec = request_response::json::codec::Codec::default()
        .set_request_size_maximum(1 << 10)
        .set_response_size_maximum(16 << 10);
    request_response::Behaviour::with_codec(
        codec,
        [(PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(ASK_TIMEOUT),
    )
}

/// One peer asked on behalf of one lookup.
pub struct Asked {
    pub name: Name,
    /// The lookup's asker (closed when every part of the lookup has ended).
    pub tx: mpsc::Sender<Found>,
    /// Nothing older than this is handed to the asker (what this node has seen).
    pub floor: u64,
    pub rejects: Rejects,
}

impl Asked {
    /// `peer`'s answer: checked, kept if it is the best (in every DHT store given), handed
    /// to the asker unless older than the floor. `Err(peer)` when the peer is to blame.
    pub fn answered(
        self,
        kads: [Option<&mut Kad>; 2],
        peer: PeerId,
        answer: Answer,
    ) -> Result<(), PeerId> {
        let Some(text) = answer.record else {
            return Ok(());
        };
        let bytes = match record::from_base64(&text) {
            Ok(b) => b,
            Err(e) => {
                let mut r = self.rejects.lock().unwrap_or_else(|e| e.into_inner());
                r.offences = r.offences.saturating_add(1);
                r.why = Some(e.to_string());
                return Err(peer);
            }
        };
        let record = match check(&self.name, &bytes, &self.rejects) {
            Ok(r) => r,
            Err(blame) => {
                log::debug!("{}: the record {peer} sent refused", self.name);
                return if blame { Err(peer) } else { Ok(()) };
            }
        };
        for kad in kads.into_iter().flatten() {
            keep(kad, &self.name, &bytes, &record);
        }
        if record.sequence >= self.floor {
            let _ = self.tx.try_send(Found {
                record,
                bytes,
                from: Some(peer),
                direct: true,
            });
        }
        Ok(())
    }
}
