//! Which pool of server threads the calling thread belongs to. A source that can keep its
//! caller waiting (the network: seconds, for a block no peer has sent yet) limits how many
//! threads of each pool wait at once, so that every pool keeps threads free to answer what
//! is here. The mount's `/dev/fuse` threads, and every thread that never says, are pool 0;
//! each CPU's io_uring queue is a pool of its own, because a request made on that CPU can
//! only be answered by that queue's threads.

use std::cell::Cell;

thread_local! {
    static POOL: Cell<usize> = const { Cell::new(0) };
}

/// Puts the calling thread in pool `pool`.
pub fn set(pool: usize) {
    POOL.set(pool);
}

/// The calling thread's pool.
pub fn current() -> usize {
    POOL.get()
}
