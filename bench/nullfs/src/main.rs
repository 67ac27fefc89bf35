//! A FUSE filesystem that answers LOOKUP and GETATTR from nothing (a name starting with `d`
//! is a directory, anything else an empty file), served either by threads reading
//! `/dev/fuse` or by FUSE-over-io_uring queues, one pinned thread per CPU: the cost of the
//! transport alone, without cairn's work. Usage: `nullfs MOUNTPOINT classic|uring [THREADS]`
//! as root; `umount MOUNTPOINT` ends it. See BENCHMARKS.md ("Apps and start-up").
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::{ffi::CString, os::fd::RawFd, time::Duration};

const IN_HDR: usize = 40;
const OUT_HDR: usize = 16;
const PAYLOAD: usize = 128 << 10;

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

fn attr(ino: u64, dir: bool) -> Vec<u8> {
    let mut a = Vec::with_capacity(88);
    a.extend(ino.to_le_bytes());
    a.extend(0u64.to_le_bytes()); // size
    a.extend(0u64.to_le_bytes()); // blocks
    for _ in 0..3 {
        a.extend(0u64.to_le_bytes());
    }
    for _ in 0..3 {
        a.extend(0u32.to_le_bytes());
    }
    let mode: u32 = if dir { 0o40555 } else { 0o100444 };
    a.extend(mode.to_le_bytes());
    a.extend(1u32.to_le_bytes()); // nlink
    a.extend(0u32.to_le_bytes()); // uid
    a.extend(0u32.to_le_bytes()); // gid
    a.extend(0u32.to_le_bytes()); // rdev
    a.extend(4096u32.to_le_bytes()); // blksize
    a.extend(0u32.to_le_bytes()); // flags
    assert_eq!(a.len(), 88);
    a
}

/// Answers one request: (error, reply body), or None for no reply (FORGET).
fn handle(opcode: u32, nodeid: u64, op_in: &[u8], payload: &[u8]) -> Option<(i32, Vec<u8>)> {
    let _ = op_in;
    match opcode {
        1 => {
            // LOOKUP: name in payload, NUL-terminated
            let end = payload
                .iter()
                .position(|b| *b == 0)
                .unwrap_or(payload.len());
            let name = &payload[..end];
            let dir = name.first() == Some(&b'd');
            let mut h: u64 = 0xcbf29ce484222325 ^ nodeid;
            for b in name {
                h = (h ^ *b as u64).wrapping_mul(0x100000001b3);
            }
            let ino = (h >> 1) | 2;
            let mut r = Vec::with_capacity(128);
            r.extend(ino.to_le_bytes());
            r.extend(0u64.to_le_bytes());
            r.extend(3600u64.to_le_bytes());
            r.extend(3600u64.to_le_bytes());
            r.extend(0u32.to_le_bytes());
            r.extend(0u32.to_le_bytes());
            r.extend(attr(ino, dir));
            Some((0, r))
        }
        2 | 42 => None, // FORGET, BATCH_FORGET
        3 => {
            let mut r = Vec::with_capacity(104);
            r.extend(3600u64.to_le_bytes());
            r.extend(0u32.to_le_bytes());
            r.extend(0u32.to_le_bytes());
            r.extend(attr(nodeid, nodeid == 1));
            Some((0, r))
        }
        _ => Some((-libc::ENOSYS, Vec::new())),
    }
}

fn classic(fd: RawFd) {
    let mut buf = vec![0u8; PAYLOAD + 4096];
    loop {
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::EINTR) | Some(libc::EAGAIN) => continue,
                _ => return,
            }
        }
        let b = &buf[..n as usize];
        let opcode = u32_at(b, 4);
        let unique = u64_at(b, 8);
        let nodeid = u64_at(b, 16);
        // classic: op header then payload are contiguous; LOOKUP has only the name.
        let body = &b[IN_HDR..];
        let (op_in, payload): (&[u8], &[u8]) = if opcode == 1 {
            (&[], body)
        } else {
            (body, &[])
        };
        if let Some((err, r)) = handle(opcode, nodeid, op_in, payload) {
            let r = if err != 0 { Vec::new() } else { r };
            let mut out = Vec::with_capacity(OUT_HDR + r.len());
            out.extend(((OUT_HDR + r.len()) as u32).to_le_bytes());
            out.extend(err.to_le_bytes());
            out.extend(unique.to_le_bytes());
            out.extend(r);
            unsafe { libc::write(fd, out.as_ptr().cast(), out.len()) };
        }
    }
}

#[repr(C, align(64))]
struct Header([u8; 288]);

fn uring_cmd(
    fd: RawFd,
    op: u32,
    qid: u16,
    commit_id: u64,
    iov: Option<*const libc::iovec>,
) -> squeue::Entry128 {
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_le_bytes());
    cmd[16..18].copy_from_slice(&qid.to_le_bytes());
    let mut b = opcode::UringCmd80::new(types::Fd(fd), op).cmd(cmd);
    if let Some(iov) = iov {
        b = b.addr(Some(iov as u64));
    }
    let e = b.build();
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(e) };
    if iov.is_some() {
        raw[24..28].copy_from_slice(&2u32.to_le_bytes());
    }
    unsafe { std::mem::transmute(raw) }
}

fn queue(fd: RawFd, qid: u16, entries: usize) {
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(qid as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
    let mut ring: IoUring<squeue::Entry128, cqueue::Entry> = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(64)
        .expect("ring");
    let mut headers: Vec<Box<Header>> = (0..entries).map(|_| Box::new(Header([0; 288]))).collect();
    let mut payloads: Vec<Vec<u8>> = (0..entries).map(|_| vec![0u8; PAYLOAD]).collect();
    let iovs: Vec<[libc::iovec; 2]> = (0..entries)
        .map(|i| {
            [
                libc::iovec {
                    iov_base: headers[i].0.as_mut_ptr().cast(),
                    iov_len: 288,
                },
                libc::iovec {
                    iov_base: payloads[i].as_mut_ptr().cast(),
                    iov_len: PAYLOAD,
                },
            ]
        })
        .collect();
    for (i, iov) in iovs.iter().enumerate() {
        let e = uring_cmd(fd, 1, qid, 0, Some(iov.as_ptr())).user_data(i as u64);
        unsafe { ring.submission().push(&e).unwrap() };
    }
    loop {
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => {
                eprintln!("q{qid}: submit: {e}");
                return;
            }
        }
        let done: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (i, res) in done {
            let i = i as usize;
            if res < 0 {
                if res == -libc::EAGAIN {
                    std::thread::sleep(Duration::from_millis(5));
                    let e = uring_cmd(fd, 1, qid, 0, Some(iovs[i].as_ptr())).user_data(i as u64);
                    unsafe { ring.submission().push(&e).unwrap() };
                    continue;
                }
                if res != -libc::ENOTCONN {
                    eprintln!(
                        "q{qid}: entry {i}: {}",
                        std::io::Error::from_raw_os_error(-res)
                    );
                }
                return;
            }
            let h = &mut headers[i].0;
            let opcode = u32_at(h, 4);
            let unique = u64_at(h, 8);
            let nodeid = u64_at(h, 16);
            let commit_id = u64_at(h, 256 + 8);
            let psz = u32_at(h, 256 + 16) as usize;
            let (err, r) = handle(opcode, nodeid, &h[128..256], &payloads[i][..psz])
                .unwrap_or((-libc::ENOSYS, Vec::new()));
            let r = if err != 0 { Vec::new() } else { r };
            payloads[i][..r.len()].copy_from_slice(&r);
            h[0..4].copy_from_slice(&((OUT_HDR + r.len()) as u32).to_le_bytes());
            h[4..8].copy_from_slice(&err.to_le_bytes());
            h[8..16].copy_from_slice(&unique.to_le_bytes());
            h[256 + 16..256 + 20].copy_from_slice(&(r.len() as u32).to_le_bytes());
            let e = uring_cmd(fd, 2, qid, commit_id, None).user_data(i as u64);
            unsafe { ring.submission().push(&e).unwrap() };
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mp = &args[1];
    let mode = args.get(2).map(String::as_str).unwrap_or("classic");
    let threads: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let fd = unsafe { libc::open(c"/dev/fuse".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    assert!(fd >= 0);
    let opts = CString::new(format!(
        "fd={fd},rootmode=40000,user_id=0,group_id=0,default_permissions"
    ))
    .unwrap();
    let mpc = CString::new(mp.as_str()).unwrap();
    let r = unsafe {
        libc::mount(
            c"nullfs".as_ptr(),
            mpc.as_ptr(),
            c"fuse.nullfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RDONLY,
            opts.as_ptr().cast(),
        )
    };
    assert_eq!(r, 0, "mount: {}", std::io::Error::last_os_error());
    // INIT
    let mut buf = vec![0u8; PAYLOAD + 4096];
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n > 0);
    assert_eq!(u32_at(&buf, 4), 26, "INIT first");
    let unique = u64_at(&buf, 8);
    let kminor = u32_at(&buf, IN_HDR + 4);
    let kflags = u32_at(&buf, IN_HDR + 12) as u64 | ((u32_at(&buf, IN_HDR + 16) as u64) << 32);
    let want_uring = mode == "uring";
    let mut flags: u64 = (1 << 30) | (1 << 22); // INIT_EXT, MAX_PAGES
    if want_uring {
        assert!(
            kflags & (1 << 41) != 0,
            "kernel does not offer FUSE_OVER_IO_URING (enable_uring?)"
        );
        flags |= 1 << 41;
    }
    let mut out = Vec::new();
    out.extend(((OUT_HDR + 64) as u32).to_le_bytes());
    out.extend(0i32.to_le_bytes());
    out.extend(unique.to_le_bytes());
    out.extend(7u32.to_le_bytes());
    out.extend(kminor.min(44).to_le_bytes());
    out.extend((128u32 << 10).to_le_bytes()); // max_readahead
    out.extend((flags as u32).to_le_bytes());
    out.extend(16u16.to_le_bytes()); // max_background
    out.extend(12u16.to_le_bytes()); // congestion
    out.extend((PAYLOAD as u32).to_le_bytes()); // max_write
    out.extend(1u32.to_le_bytes()); // time_gran
    out.extend(((PAYLOAD / 4096) as u16).to_le_bytes()); // max_pages
    out.extend(0u16.to_le_bytes()); // map_alignment
    out.extend(((flags >> 32) as u32).to_le_bytes()); // flags2
    out.extend(0u32.to_le_bytes()); // max_stack_depth
    out.extend([0u8; 24]);
    assert_eq!(out.len(), OUT_HDR + 64);
    let w = unsafe { libc::write(fd, out.as_ptr().cast(), out.len()) };
    assert_eq!(
        w as usize,
        out.len(),
        "init reply: {}",
        std::io::Error::last_os_error()
    );
    let mut hs = Vec::new();
    // The classic reader stays for FORGET/INTERRUPT and for anything queued before the ring.
    let classics = if want_uring { 1 } else { threads };
    for _ in 0..classics {
        hs.push(std::thread::spawn(move || classic(fd)));
    }
    if want_uring {
        let cpus = std::thread::available_parallelism().unwrap().get();
        for q in 0..cpus {
            hs.push(std::thread::spawn(move || queue(fd, q as u16, threads)));
        }
    }
    eprintln!("nullfs: mounted ({mode})");
    for h in hs {
        let _ = h.join();
    }
}
