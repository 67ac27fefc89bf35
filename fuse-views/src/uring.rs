//! FUSE over io_uring (Linux 6.14+): the kernel queues each request on the queue of the CPU
//! its caller runs on, and a cairn thread pinned to that CPU answers it there.
//!
//! Over `/dev/fuse`, a request wakes whichever server thread has waited longest, almost
//! always on another CPU, and the reply wakes the caller back across: two cross-CPU wake-ups
//! per round trip. On a virtual machine whose idle vCPUs halt, each one costs a VM exit; a
//! `stat` pass over a fresh mount ran at 33k names/s through `/dev/fuse` and at 75k/s through
//! per-CPU queues, for a filesystem that answers from nothing (BENCHMARKS.md). Program
//! start-up on a fresh mount is made of such round trips.
//!
//! The kernel offers this only when `/sys/module/fuse/parameters/enable_uring` is set, and
//! only after every queue (one per possible CPU) has an entry registered; until then, and for
//! FORGET and INTERRUPT always, requests come through `/dev/fuse`, where fuser's threads keep
//! serving them. Each queue has a few threads, each with a ring of its own and one entry
//! (a header and a payload buffer), so that a request that waits for the network holds up
//! one thread, not its CPU's queue.

mod wire;

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
    thread::JoinHandle,
};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::fs::CairnFs;

const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;

/// Whether the kernel will offer FUSE over io_uring to a new mount.
pub fn enabled() -> bool {
    std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring")
        .is_ok_and(|v| v.trim() == "Y" || v.trim() == "1")
}

/// How many queues the kernel makes: one per possible CPU.
pub fn possible_cpus() -> usize {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/possible").unwrap_or_default();
    let last = list
        .trim()
        .split(',')
        .filter_map(|r| r.rsplit('-').next()?.parse::<usize>().ok())
        .max();
    last.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get()),
        |l| l + 1,
    )
}

/// How many threads serve each CPU's queue when `threads` serve the mount: an even share,
/// and at least 4, so that reads waiting for the network (at most all but two of a queue's
/// threads, see [`crate::mount::network_waiters`]) leave two to answer the rest.
pub fn threads_per_queue(threads: usize) -> usize {
    (threads / possible_cpus()).max(4)
}

/// The queues' threads, serving until the mount goes away.
pub struct Queues {
    threads: Vec<JoinHandle<()>>,
}

impl Queues {
    /// Starts `per_queue` threads for each CPU's queue on the connection `dev` (a clone of
    /// the session's `/dev/fuse` descriptor), each with a payload buffer of `payload` bytes
    /// (the connection's largest request or reply). Errors if a ring cannot be set up; the
    /// mount is then served through `/dev/fuse` alone.
    pub fn start(
        fs: CairnFs,
        dev: OwnedFd,
        per_queue: usize,
        payload: usize,
    ) -> io::Result<Queues> {
        let dev = std::sync::Arc::new(dev);
        let mut threads = Vec::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let queues = possible_cpus();
        for qid in 0..queues {
            for t in 0..per_queue.max(1) {
                let (fs, dev, tx) = (fs.clone(), dev.clone(), tx.clone());
                let thread = std::thread::Builder::new()
                    .name(format!("cairn-q{qid}.{t}"))
                    .spawn(move || {
                        let mut entry = match Entry::register(&dev, qid as u16, payload) {
                            Ok(e) => {
                                let _ = tx.send(Ok(()));
                                e
                            }
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        };
                        drop(tx);
                        entry.serve(&fs);
                    })?;
                threads.push(thread);
            }
        }
        drop(tx);
        for _ in 0..threads.len() {
            rx.recv()
                .map_err(|_| io::Error::other("a queue thread died"))??;
        }
        Ok(Queues { threads })
    }

    /// Waits, at most `limit`, for the threads to end, which they do once the connection
    /// is gone (a thread waiting for the network, once that wait ends). The process must not
    /// exit under them: at exit, C++ statics (RocksDB's thread-local registry among them)
    /// are torn down, and a thread ending then runs its thread-local destructors against
    /// them. fuser joins its own threads the same way before `run` returns.
    pub fn join(self, limit: std::time::Duration) {
        let start = std::time::Instant::now();
        while !self.threads.iter().all(|t| t.is_finished()) {
            if start.elapsed() > limit {
                log::warn!("fuse queues: threads still busy after {limit:?}; exiting anyway");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// How many threads serve the queues.
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }
}

/// One ring entry and the ring it was registered through.
struct Entry {
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    dev: std::sync::Arc<OwnedFd>,
    qid: u16,
    header: Box<[u8; wire::HEADER_LEN]>,
    payload: Vec<u8>,
    /// Where a read is assembled before it is copied into the payload.
    read_buf: Vec<u8>,
    iov: Box<[libc::iovec; 2]>,
}

// SAFETY: `iov` points into `header` and `payload`, which the entry owns and never moves
// (both are heap allocations); the entry is used by one thread at a time.
unsafe impl Send for Entry {}

impl Entry {
    /// Makes a ring on this thread, pins the thread to CPU `qid` and registers one entry
    /// for queue `qid`.
    fn register(dev: &std::sync::Arc<OwnedFd>, qid: u16, payload: usize) -> io::Result<Entry> {
        pin_to_cpu(qid as usize);
        cairn_store::pool::set(1 + qid as usize);
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(4)?;
        let mut header = Box::new([0u8; wire::HEADER_LEN]);
        let mut payload = vec![0u8; payload];
        let iov = Box::new([
            libc::iovec {
                iov_base: header.as_mut_ptr().cast(),
                iov_len: wire::HEADER_LEN,
            },
            libc::iovec {
                iov_base: payload.as_mut_ptr().cast(),
                iov_len: payload.len(),
            },
        ]);
        let mut entry = Entry {
            ring,
            dev: dev.clone(),
            qid,
            header,
            payload,
            read_buf: Vec::new(),
            iov,
        };
        // The kernel answers EAGAIN until the connection's INIT is done; it is, by now.
        entry.submit(CMD_REGISTER, 0)?;
        Ok(entry)
    }

    /// Queues command `op` for this entry and submits it.
    fn submit(&mut self, op: u32, commit_id: u64) -> io::Result<()> {
        // struct fuse_uring_cmd_req: flags, commit_id, qid.
        let mut cmd = [0u8; 80];
        cmd[8..16].copy_from_slice(&commit_id.to_le_bytes());
        cmd[16..18].copy_from_slice(&self.qid.to_le_bytes());
        let mut sqe = opcode::UringCmd80::new(types::Fd(self.dev.as_raw_fd()), op).cmd(cmd);
        if op == CMD_REGISTER {
            sqe = sqe.addr(Some(self.iov.as_ptr() as u64));
        }
        let sqe = with_len(sqe.build(), if op == CMD_REGISTER { 2 } else { 0 });
        // SAFETY: the buffers the command names live as long as the entry, and the ring
        // (which the kernel may still hold them through) is dropped first.
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("submission queue full"))?;
        self.ring.submit()?;
        Ok(())
    }

    /// Answers requests until the connection ends.
    fn serve(&mut self, fs: &CairnFs) {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    log::warn!("fuse queue {}: {e}", self.qid);
                    return;
                }
            }
            let Some(cqe) = self.ring.completion().next() else {
                continue;
            };
            if cqe.result() < 0 {
                let errno = -cqe.result();
                let e = io::Error::from_raw_os_error(errno);
                match errno {
                    // The mount went away.
                    libc::ENOTCONN | libc::ECONNABORTED | libc::ENODEV | libc::ECANCELED => {
                        log::debug!("fuse queue {}: {e}", self.qid)
                    }
                    // A refused registration: the mount is served through /dev/fuse.
                    _ => log::warn!("fuse queue {}: {e}", self.qid),
                }
                return;
            }
            let (commit_id, _) = wire::entry_in(&self.header);
            wire::serve(fs, &mut self.header, &mut self.payload, &mut self.read_buf);
            if let Err(e) = self.submit(CMD_COMMIT_AND_FETCH, commit_id) {
                log::warn!("fuse queue {}: {e}", self.qid);
                return;
            }
        }
    }
}

/// The io-uring crate's command builder sets no `len`; FUSE reads the iovec count there.
fn with_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // SAFETY: `Entry128` is `repr(C)` over the kernel's 128-byte SQE, whose `len` field is
    // the u32 at byte 24; every bit pattern is a valid SQE to Rust.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[24..28].copy_from_slice(&len.to_le_bytes());
    unsafe { std::mem::transmute::<[u8; 128], squeue::Entry128>(raw) }
}

/// Keeps this thread on CPU `cpu`, where its queue's requests are made; a CPU the thread may
/// not run on (a cpuset) leaves it unpinned, which is slower, not wrong.
fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data; the calls get valid pointers and sizes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) != 0 {
            log::debug!(
                "fuse queue {cpu}: not pinned: {}",
                io::Error::last_os_error()
            );
        }
    }
}
