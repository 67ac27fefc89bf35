//! FUSE over io_uring (Linux 6.14+): the kernel queues each request on the queue of the CPU
//! its caller runs on, and a cairn thread pinned to that CPU answers it there.
//!
//! Over `/dev/fuse`, a request wakes whichever server thread has waited longest, almost
//! always on another CPU, and the reply wakes the caller back: two cross-CPU wake-ups
//! per round trip. On a virtual machine whose idle vCPUs halt, each one costs a VM exit; a
//! `stat` pass over a fresh mount ran at 33k names/s through `/dev/fuse` and at 75k/s through
//! per-CPU queues, for a filesystem that answers from nothing (BENCHMARKS.md). Program
//! start-up on a fresh mount is made of such round trips.
//!
//! The kernel offers this only when `/sys/module/fuse/parameters/enable_uring` is set, and
//! uses the queues only once every queue (one per possible CPU) has an entry registered;
//! until then, and for FORGET and INTERRUPT always, requests come through `/dev/fuse`, where
//! fuser's threads keep serving them. Once INIT has agreed to io_uring, the kernel holds
//! back every request until the queues are ready, so everything that can fail (rings,
//! buffers, threads) is made before INIT is answered ([`Queues::prepare`]), and the
//! agreement is asked for only if it all worked; a registration the kernel refuses turns
//! io_uring off again on its side. Each queue has a few threads, each with a ring of its own
//! and one entry (a header and a payload buffer), so that a request that waits for the
//! network holds up one thread, not its CPU's queue. A thread answers every request it
//! takes, EIO if the operation panicked: an entry left unanswered would leave its caller
//! waiting until the mount goes away.
//!
//! A large READ is mostly hashing blocks, and all of one reader's READs (its read-ahead
//! too) land on its CPU's queue: answered there, a sequential read used one core (0.8–1.1
//! GB/s against 1.7 GB/s through `/dev/fuse`, whose threads run anywhere). READs of
//! [`OFFLOAD`] bytes or more are therefore handed to unpinned helper threads, while the
//! queue thread waits; the two wake-ups that costs are small beside the work.

mod wire;

use std::{
    io,
    os::fd::{AsRawFd, OwnedFd},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use crate::fs::CairnFs;

const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;

/// READs this large go to a helper thread (read-ahead asks for up to 1 MiB; a program's
/// small files and headers stay on the caller's CPU).
pub const OFFLOAD: u32 = 128 << 10;

type Job = Box<dyn FnOnce() + Send>;

/// Unpinned threads that run queue threads' large READs.
struct Helpers {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Helpers {
    /// Runs `f` on a helper in the calling thread's network pool and waits for it; `None`
    /// if it panicked.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let pool = cairn_store::pool::current();
        let job: Job = Box::new(move || {
            cairn_store::pool::set(pool);
            let _ = tx.send(f());
        });
        self.jobs.send(job).ok()?;
        rx.recv().ok()
    }
}

/// A helper: runs jobs until every sender (the queue threads) is gone.
fn help(jobs: &Mutex<std::sync::mpsc::Receiver<Job>>) {
    loop {
        let job = jobs.lock().expect("jobs").recv();
        let Ok(job) = job else {
            return;
        };
        // A panic drops the job's reply channel: its queue thread answers EIO.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

/// Whether the kernel will offer FUSE over io_uring to a new mount.
pub fn enabled() -> bool {
    std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring")
        .is_ok_and(|v| v.trim() == "Y" || v.trim() == "1")
}

/// The CPUs of a sysfs CPU list ("0-3,8"), or `None` if it cannot be read.
fn cpu_list(path: &str) -> Option<Vec<usize>> {
    let list = std::fs::read_to_string(path).ok()?;
    let mut cpus = Vec::new();
    for range in list.trim().split(',').filter(|r| !r.is_empty()) {
        let (a, b) = range.split_once('-').unwrap_or((range, range));
        let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
        cpus.extend(a..=b);
    }
    Some(cpus)
}

/// How many queues the kernel makes: one per possible CPU (`None` if that cannot be read,
/// and then the queues are not used: a wrong count would never make them ready).
pub fn possible_cpus() -> Option<usize> {
    cpu_list("/sys/devices/system/cpu/possible")?
        .into_iter()
        .max()
        .map(|m| m + 1)
}

/// How many threads serve each online CPU's queue when `threads` serve the mount through
/// `/dev/fuse`: as many, because one program's requests all land on its CPU's queue (a
/// sequential read of a file being fetched had more than six READs waiting for the network
/// at once, over the limit that 8 threads a queue gave); fewer past 16 online CPUs, to stay near 256 in all; at least 4, so that reads
/// waiting for the network (at most all but two of a queue's threads, see
/// [`crate::mount::network_waiters`]) leave two to answer the rest. A CPU that is not
/// online gets one thread: no caller runs there, but the kernel wants every queue
/// registered.
pub fn threads_per_queue(threads: usize) -> usize {
    let online = cpu_list("/sys/devices/system/cpu/online").map_or(1, |c| c.len().max(1));
    threads.min(256 / online).max(4)
}

/// Whether the prepared threads register their entries (INIT agreed) or end (it did not).
type Go = Arc<(Mutex<Option<bool>>, Condvar)>;

/// The queues' threads, serving until the mount goes away.
pub struct Queues {
    /// The queue threads, then the helpers.
    threads: Vec<JoinHandle<()>>,
    entries: usize,
    go: Go,
}

impl Queues {
    /// Before INIT: starts `per_queue` threads for each online CPU's queue (one for each
    /// other possible CPU) on the connection `dev` (a clone of the session's `/dev/fuse`
    /// descriptor), each with its ring and a payload buffer of `payload` bytes (the
    /// connection's largest request or reply), waiting for [`Queues::go`]. Errors, with
    /// every thread ended, if any of that cannot be made.
    pub fn prepare(
        fs: CairnFs,
        dev: OwnedFd,
        per_queue: usize,
        payload: usize,
    ) -> io::Result<Queues> {
        let possible =
            possible_cpus().ok_or_else(|| io::Error::other("cannot read the possible CPUs"))?;
        let online = cpu_list("/sys/devices/system/cpu/online").unwrap_or_default();
        let dev = Arc::new(dev);
        let go: Go = Arc::new((Mutex::new(None), Condvar::new()));
        let mut queues = Queues {
            threads: Vec::new(),
            entries: 0,
            go: go.clone(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let (jobs, queued) = std::sync::mpsc::channel::<Job>();
        let helpers = Arc::new(Helpers { jobs });
        let queued = Arc::new(Mutex::new(queued));
        let mut entries = 0;
        for qid in 0..possible {
            let threads = if online.contains(&qid) { per_queue } else { 1 };
            for t in 0..threads {
                entries += 1;
                let (fs, dev, tx, go) = (fs.clone(), dev.clone(), tx.clone(), go.clone());
                let helpers = helpers.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("cairn-q{qid}.{t}"))
                    .spawn(move || {
                        let made = Entry::new(dev, qid, payload);
                        let ok = made.as_ref().map(|_| ()).map_err(|e| e.kind());
                        let _ = tx.send(ok);
                        drop(tx);
                        let (Ok(mut entry), true) = (made, wait_for(&go)) else {
                            return;
                        };
                        entry.serve(&fs, &helpers);
                    });
                match spawned {
                    Ok(thread) => queues.threads.push(thread),
                    Err(e) => {
                        queues.go(false);
                        return Err(e);
                    }
                }
            }
        }
        drop(tx);
        queues.entries = entries;
        // As many helpers as queue threads: each waits for its helper, so none queues.
        // They end when the queue threads (the only holders of `helpers`) have.
        drop(helpers);
        for h in 0..entries {
            let queued = queued.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("cairn-read{h}"))
                .spawn(move || help(&queued));
            match spawned {
                Ok(thread) => queues.threads.push(thread),
                Err(e) => {
                    queues.go(false);
                    return Err(e);
                }
            }
        }
        let mut failed = None;
        for _ in 0..entries {
            match rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(kind)) => failed = Some(io::Error::from(kind)),
                Err(_) => failed = Some(io::Error::other("a queue thread died")),
            }
        }
        if let Some(e) = failed {
            queues.go(false);
            return Err(e);
        }
        Ok(queues)
    }

    /// After INIT was answered: the threads register their entries if it agreed to
    /// io_uring, and end if not.
    pub fn go(&self, register: bool) {
        let (lock, cv) = &*self.go;
        *lock.lock().expect("go") = Some(register);
        cv.notify_all();
    }

    /// Waits, at most `limit`, for the threads to end, which they do once the connection
    /// is gone (a thread waiting for the network, once that wait ends). The process must not
    /// exit under them: at exit, C++ statics (RocksDB's thread-local registry among them)
    /// are torn down, and a thread ending then runs its thread-local destructors against
    /// them. fuser joins its own threads the same way before `run` returns.
    pub fn join(self, limit: Duration) {
        self.go(false);
        let start = Instant::now();
        while !self.threads.iter().all(|t| t.is_finished()) {
            if start.elapsed() > limit {
                log::warn!("fuse queues: threads still busy after {limit:?}; exiting anyway");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// How many threads serve the queues (not counting the helpers).
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

/// Waits for [`Queues::go`]; true to register.
fn wait_for(go: &Go) -> bool {
    let (lock, cv) = &**go;
    let mut state = lock.lock().expect("go");
    loop {
        if let Some(register) = *state {
            return register;
        }
        state = cv.wait(state).expect("go");
    }
}

/// One ring entry and the ring it is registered through. Made and used on one thread.
/// Fields drop in order: the ring first, so that the kernel is done with the buffers
/// before they are freed.
struct Entry {
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    dev: Arc<OwnedFd>,
    qid: u16,
    header: Box<[u8; wire::HEADER_LEN]>,
    payload: Vec<u8>,
    /// Where a read is assembled before it is copied into the payload.
    read_buf: Vec<u8>,
    iov: Box<[libc::iovec; 2]>,
}

impl Entry {
    /// Pins this thread to CPU `qid` and makes a ring and the buffers of one entry for
    /// queue `qid`.
    fn new(dev: Arc<OwnedFd>, qid: usize, payload: usize) -> io::Result<Entry> {
        let qid16 = u16::try_from(qid).map_err(|_| io::Error::other("too many CPUs"))?;
        pin_to_cpu(qid);
        cairn_store::pool::set(1 + qid);
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
        Ok(Entry {
            ring,
            dev,
            qid: qid16,
            header,
            payload,
            read_buf: Vec::new(),
            iov,
        })
    }

    /// Queues command `op` for this entry; the next `submit_and_wait` sends it.
    fn push(&mut self, op: u32, commit_id: u64) -> io::Result<()> {
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
            .map_err(|_| io::Error::other("submission queue full"))
    }

    /// Registers the entry, then answers requests until the connection ends.
    fn serve(&mut self, fs: &CairnFs, helpers: &Helpers) {
        let read = |fs: &CairnFs, ino, offset, size, buf: &mut Vec<u8>| {
            if size < OFFLOAD {
                return fs.op_read(ino, offset, size, buf);
            }
            let (fs, mut taken) = (fs.clone(), std::mem::take(buf));
            let done = helpers.run(move || {
                let r = fs.op_read(ino, offset, size, &mut taken);
                (taken, r)
            });
            let (back, r) = done.ok_or(fuser::Errno::EIO)?;
            *buf = back;
            r
        };
        let mut last = (CMD_REGISTER, 0);
        if let Err(e) = self.push(last.0, last.1) {
            log::warn!("fuse queue {}: {e}", self.qid);
            return;
        }
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) => continue,
                Err(e) => {
                    log::warn!("fuse queue {}: {e}", self.qid);
                    return;
                }
            }
            let Some(cqe) = self.ring.completion().next() else {
                continue;
            };
            match -cqe.result() {
                0 => {}
                // Not now (the connection's INIT not done yet, a signal): send it again.
                libc::EAGAIN | libc::EINTR => {
                    std::thread::sleep(Duration::from_millis(1));
                    if self.push(last.0, last.1).is_err() {
                        return;
                    }
                    continue;
                }
                // The mount went away.
                libc::ENOTCONN | libc::ECONNABORTED | libc::ENODEV | libc::ECANCELED => return,
                // A refused registration: the kernel serves the mount through /dev/fuse.
                errno => {
                    let e = io::Error::from_raw_os_error(errno);
                    log::warn!("fuse queue {}: {e}", self.qid);
                    return;
                }
            }
            let (commit_id, _) = wire::entry_in(&self.header);
            let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                wire::serve(
                    fs,
                    &mut self.header,
                    &mut self.payload,
                    &mut self.read_buf,
                    &read,
                )
            }));
            if answered.is_err() {
                wire::fail(&mut self.header, libc::EIO);
            }
            last = (CMD_COMMIT_AND_FETCH, commit_id);
            if let Err(e) = self.push(last.0, last.1) {
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
/// not run on (a cpuset, an offline CPU) leaves it unpinned, which is slower, not wrong.
fn pin_to_cpu(cpu: usize) {
    if cpu >= libc::CPU_SETSIZE as usize {
        return;
    }
    // SAFETY: cpu_set_t is plain data; the calls get valid pointers and sizes, and `cpu` is
    // within the set.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_read_as_sysfs_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list");
        for (text, want) in [
            ("0-1\n", Some(vec![0, 1])),
            ("0,2-3,8\n", Some(vec![0, 2, 3, 8])),
            ("5\n", Some(vec![5])),
            ("\n", Some(vec![])),
            ("0-x\n", None),
        ] {
            std::fs::write(&p, text).unwrap();
            assert_eq!(cpu_list(p.to_str().unwrap()), want, "{text:?}");
        }
        assert_eq!(cpu_list("/nonexistent/cpu/list"), None);
    }
}
