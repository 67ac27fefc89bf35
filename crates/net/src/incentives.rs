//! Whom cairn serves first and whom it asks: the incentive policy, after Feldman, Lai, Stoica
//! and Chuang, "Robust Incentive Techniques for Peer-to-Peer Networks" (EC 2004).
//!
//! **The model.** Peers meet in repeated rounds of a prisoner's dilemma: serving costs the
//! server upload, being served is worth more to the client than it cost. A *reciprocative*
//! peer serves others in proportion to how they have served it (their generosity). Against a
//! population of free-riders this wins if three things hold: decisions use recent behaviour
//! (a good record cannot be cashed in later), new identities are worth no more than a bad
//! record (or bad peers just rename themselves: whitewashing), and second-hand reports cannot
//! be inflated by colluders (maxflow over a contribution graph bounds what they can claim to
//! what they gave honest peers).
//!
//! **What cairn does.**
//! - *Short-term history* ([`crate::ledger`]): bytes each way decay with a 10-minute
//!   half-life; blocks that were not what we asked for, too.
//! - *Whom to serve* ([`crate::bitswap::upload`]): with an upload limit and senders waiting,
//!   each peer gets a share of the upload proportional to its [`weight`]:
//!   `FLOOR + min(given / (taken + GRACE), CAP)`, where `given` is what it gave us lately
//!   plus what it gave through others (the max flow from it to us, [`crate::reputation`]),
//!   and `taken` what we sent it lately plus what it took through others (the max flow from
//!   us to it: what we gave peers that gave it), both ways as the paper has it. A contributor that gave as much as it took weighs about 1; a free-rider
//!   [`FLOOR`], one sixteenth. Nobody waits for capacity nobody else wants: the order only
//!   matters under contention, so kubo and Helia, which never upload to us, are served fully
//!   by a node with spare capacity. [`GRACE`] (256 KiB) is the same for everyone, so a
//!   peer's first block or so is not held against it.
//! - *Adaptive stranger policy*: every peer that gave us under 256 KiB lately (and has no
//!   reputation to speak for it) is in one class, whatever it took: new identities and
//!   known free-riders alike. The class weighs like one peer whose record is the
//!   strangers' record as a group ([`stranger_weight`]), at most [`STRANGER_MAX`]. When
//!   strangers lately took and never gave, the class falls to the floor. A fresh identity is
//!   worth exactly what a known free-rider is (they share the class), and a thousand of
//!   them get what one would.
//! - *Whom to ask* ([`crate::bitswap::wants`]): among the peers that have a block, a peer that
//!   sent a bad block lately is asked last; the others are asked by load discounted by how
//!   much they delivered lately ([`Standing`]), so wants go to the best recent deliverers
//!   first and spill over to the rest as their queues fill.
//! - *Shared history* ([`crate::history`]): cairn nodes exchange signed statements of what
//!   others gave them, and relay others' as their issuers signed them, so history travels
//!   past one hop; [`crate::reputation`] credits a peer with the max flow from it to us over
//!   the statements (within four hops, 100 nodes), which colluders cannot raise above what
//!   they gave honest peers, and charges it the flow the other way.
//!
//! **Why these numbers.** The floor is not zero: a reciprocative peer that never serves
//! strangers cannot start a relationship, and a node that starves kubo under load breaks
//! interop for users who did nothing wrong. One sixteenth keeps a contributor 16 times ahead
//! of a free-rider, enough for "2× sooner" with room for noise, while a free-rider still
//! finishes. `CAP` stops one huge past gift from owning the upload. The stranger class at
//! most half a contributor: newcomers are welcome, not preferred.

use crate::ledger::{now_ms, Group, PeerStats, STRANGER_BYTES};

/// The weight of a peer that gives nothing.
pub const FLOOR: f64 = 1.0 / 16.0;
/// The most generosity counts for.
pub const CAP: f64 = 4.0;
/// Bytes of taking that are free: `taken` counts from here.
pub const GRACE: f64 = STRANGER_BYTES as f64;
/// The most the strangers' class weighs.
pub const STRANGER_MAX: f64 = 0.5;
/// Recent bad blocks (decayed) from which a peer is asked last and weighs [`FLOOR`].
pub const BAD: f64 = 0.5;

/// What a peer gave us against what it took.
pub fn generosity(given: f64, taken: f64) -> f64 {
    given.max(0.0) / (taken.max(0.0) + GRACE)
}

/// True if `s` sent bad blocks lately.
pub fn is_bad(s: &PeerStats, now_ms: u64) -> bool {
    s.recent_bad.at(now_ms) >= BAD
}

/// A known peer's share of a contended upload. `reputation`: what it gave through others
/// (bytes it gave peers that gave us), and `took`: what it took through others (bytes we
/// gave peers that gave it), from shared history.
pub fn weight(s: &PeerStats, reputation: f64, took: f64, now_ms: u64) -> f64 {
    if is_bad(s, now_ms) {
        return FLOOR;
    }
    let given = s.recent_received.at(now_ms) + reputation;
    let taken = s.recent_sent.at(now_ms) + took;
    FLOOR + generosity(given, taken).min(CAP)
}

/// The strangers' class's share: their record as a group, at most [`STRANGER_MAX`].
pub fn stranger_weight(g: &Group, now_ms: u64) -> f64 {
    let given = g.recent_received.at(now_ms);
    (FLOOR + generosity(given, g.recent_sent.at(now_ms)).min(CAP)).min(STRANGER_MAX)
}

/// How a peer stands as a server of ours: what the want planner ranks holders by.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Standing {
    /// Sent bad blocks lately: asked only when nobody else has the block.
    pub bad: bool,
    /// Bytes it delivered to us lately (decayed).
    pub delivered: f64,
}

impl Standing {
    pub fn of(s: &PeerStats) -> Standing {
        let now = now_ms();
        Standing {
            bad: is_bad(s, now),
            delivered: s.recent_received.at(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Decaying;

    fn stats(given: f64, taken: f64, now: u64) -> PeerStats {
        let mut s = PeerStats::default();
        s.recent_received.add(given, now);
        s.recent_sent.add(taken, now);
        s
    }

    /// A contributor outweighs a free-rider many times over; a defector falls to the floor;
    /// strangers that only took weigh what a free-rider does, and never more than the cap.
    #[test]
    fn weights_follow_generosity() {
        let now = 1_000_000_000;
        let mib = (1 << 20) as f64;
        let contributor = weight(&stats(8.0 * mib, 8.0 * mib, now), 0.0, 0.0, now);
        let free_rider = weight(&stats(0.0, 64.0 * mib, now), 0.0, 0.0, now);
        assert_eq!(free_rider, FLOOR);
        assert!(contributor > 10.0 * free_rider, "{contributor}");
        let mut defector = stats(64.0 * mib, 0.0, now);
        assert_eq!(weight(&defector, 0.0, 0.0, now), FLOOR + CAP);
        defector.recent_bad.add(1.0, now);
        assert_eq!(weight(&defector, 0.0, 0.0, now), FLOOR);
        let takers = Group {
            recent_received: Decaying::default(),
            recent_sent: Decaying {
                value: 64.0 * mib,
                at_ms: now,
            },
        };
        assert!((stranger_weight(&takers, now) - FLOOR).abs() < 1e-9);
        let givers = Group {
            recent_received: Decaying {
                value: 64.0 * mib,
                at_ms: now,
            },
            recent_sent: Decaying::default(),
        };
        assert_eq!(stranger_weight(&givers, now), STRANGER_MAX);
        // Reputation from shared history counts as given, and what a peer took through
        // others as taken.
        assert!(weight(&stats(0.0, 8.0 * mib, now), 8.0 * mib, 0.0, now) > 0.5);
        assert!(weight(&stats(0.0, 0.0, now), 8.0 * mib, 0.0, now) > CAP);
        assert!(weight(&stats(0.0, 0.0, now), 8.0 * mib, 64.0 * mib, now) < 0.2);
    }
}
