//! The memory inbound messages may take: [`GLOBAL`] across all peers, [`PER_PEER`] for each,
//! counted in KiB, taken chunk by chunk as a message's bytes arrive (a peer holds the room
//! of what it sent, not of what it announced), and held until the engine has handled the
//! decoded message.
//!
//! A message that cannot get room within [`WAIT`] is dropped unread (no offence: the budget
//! is ours), so that readers holding part of the budget while waiting for more cannot wait on
//! each other for ever, and a few peers holding it cannot stall everyone for long.

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of inbound messages held at once, from all peers.
pub const GLOBAL: usize = 256 << 20;
/// Bytes of inbound messages held at once from one peer (eight messages of 4 MiB).
pub const PER_PEER: usize = 32 << 20;
/// How long a message waits for room before it is dropped.
pub const WAIT: Duration = Duration::from_secs(5);

const UNIT: usize = 1 << 10;

/// The global budget; cloned into every connection's handler.
#[derive(Clone)]
pub struct Budget {
    global: Arc<Semaphore>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(GLOBAL)
    }
}

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        Budget {
            global: Arc::new(Semaphore::new(bytes.div_ceil(UNIT))),
        }
    }

    /// A share for one peer (all its connections take from it).
    pub fn peer(&self) -> PeerBudget {
        PeerBudget {
            global: self.global.clone(),
            peer: Arc::new(Semaphore::new(PER_PEER / UNIT)),
        }
    }

    /// KiB of the global budget free now.
    pub fn available_kib(&self) -> usize {
        self.global.available_permits()
    }
}

/// One peer's share, and the global budget behind it.
#[derive(Clone)]
pub struct PeerBudget {
    global: Arc<Semaphore>,
    peer: Arc<Semaphore>,
}

/// Room held for one message, grown as its bytes arrive, given back when dropped.
pub struct Taken {
    budget: PeerBudget,
    units: u32,
    peer: Option<OwnedSemaphorePermit>,
    global: Option<OwnedSemaphorePermit>,
}

impl PeerBudget {
    /// Room for a message, empty so far.
    pub fn start(&self) -> Taken {
        Taken {
            budget: self.clone(),
            units: 0,
            peer: None,
            global: None,
        }
    }
}

impl Taken {
    /// Room for `bytes` more; false if it did not come within [`WAIT`] (the message is then
    /// to be dropped, and what it held is given back with it).
    pub async fn grow(&mut self, bytes: usize) -> bool {
        let units = bytes.div_ceil(UNIT).max(1) as u32;
        let got = tokio::time::timeout(WAIT, async {
            let p = self
                .budget
                .peer
                .clone()
                .acquire_many_owned(units)
                .await
                .ok()?;
            let g = self
                .budget
                .global
                .clone()
                .acquire_many_owned(units)
                .await
                .ok()?;
            Some((p, g))
        })
        .await;
        let Ok(Some((p, g))) = got else {
            return false;
        };
        match &mut self.peer {
            Some(held) => held.merge(p),
            None => self.peer = Some(p),
        }
        match &mut self.global {
            Some(held) => held.merge(g),
            None => self.global = Some(g),
        }
        self.units += units;
        true
    }

    /// KiB held.
    pub fn kib(&self) -> u32 {
        self.units
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Room grows with what arrives; a peer cannot take more than its share; what a message
    /// held is given back when it is done; a full global budget turns a message away after
    /// a while.
    #[tokio::test(start_paused = true)]
    async fn shares_and_the_global_budget_bound_what_is_held() {
        let budget = Budget::new(12 << 20);
        let a = budget.peer();
        let mut m1 = a.start();
        for _ in 0..64 {
            assert!(m1.grow(64 << 10).await);
        }
        assert_eq!(m1.kib(), 4 << 10);
        let mut m2 = a.start();
        assert!(m2.grow(4 << 20).await);
        assert_eq!(budget.available_kib(), 4 << 10);
        let b = budget.peer();
        let mut m3 = b.start();
        assert!(m3.grow(4 << 20).await);
        // Full: the next chunk waits WAIT, then is turned away.
        let t = tokio::time::Instant::now();
        let mut m4 = b.start();
        assert!(!m4.grow(1).await);
        assert!(t.elapsed() >= WAIT);
        drop(m3);
        assert!(m4.grow(1).await);
        drop((m1, m2, m4));
        assert_eq!(budget.available_kib(), 12 << 10);
        // One peer's share: PER_PEER, whatever the global budget.
        let big = Budget::new(1 << 30);
        let c = big.peer();
        let mut all = c.start();
        assert!(all.grow(PER_PEER).await);
        assert!(!c.start().grow(1).await, "a peer went past its share");
    }
}
