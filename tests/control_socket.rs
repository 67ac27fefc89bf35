//! The control socket faces every local user: `R/daemon.sock` is 0666. A user who could make
//! the daemon hold unbounded memory or descriptors would take the mount, and every program
//! running from it, down with the daemon.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::{
    peers::Daemon,
    util::{rss_kib, Root},
};

/// As the user nobody: 1 GiB without a newline, a fetch with a window of 2^64-1, a prefetch of
/// 1,100 CIDs, and 3,000 idle connections. The daemon reads at most 64 KiB of the line and
/// hangs up with an error, refuses the window and the list by name, keeps at most 64 of
/// nobody's connections and turns the rest away at once; meanwhile it stays under 300 MB,
/// answers root's `cairn stat` and serves a file through the mount.
#[test]
fn a_local_user_cannot_exhaust_the_daemon() {
    use std::os::unix::fs::PermissionsExt;
    let root = Root::new();
    let f = root.dir.path().join("local");
    std::fs::write(&f, b"still served\n").unwrap();
    let cid = root.add_q(&[f.to_str().unwrap()]);
    let d = Daemon::start(&root, true, &["--no-dht"]);
    std::fs::set_permissions(root.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Beside the root, where nobody can read it (the clone may be somewhere nobody cannot).
    let script = root.dir.path().join("control_abuse.py");
    std::fs::write(&script, include_str!("support/control_abuse.py")).unwrap();
    let mut abuser = Command::new("setpriv")
        .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
        // Debian's python3: a python3 under /root (pyenv) is out of nobody's reach.
        .arg("/usr/bin/python3")
        .arg(&script)
        .arg(root.path().join("daemon.sock"))
        .arg(&cid)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(abuser.stdout.take().unwrap()).lines();
    let mut step = |name: &str| -> Value {
        let line = lines.next().expect("a line").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["step"], name, "{v}");
        v
    };
    let long = step("long_line");
    assert!(
        long["sent"].as_u64().unwrap() < 256 << 20,
        "the daemon read on: {long}"
    );
    assert!(
        long["reply"]
            .as_str()
            .unwrap()
            .contains("longer than 64 KiB"),
        "{long}"
    );
    let window = step("window");
    assert!(
        window["reply"].as_str().unwrap().contains("window"),
        "{window}"
    );
    let prefetch = step("prefetch");
    assert!(
        prefetch["reply"].as_str().unwrap().contains("at most 1024"),
        "{prefetch}"
    );
    let idle = step("idle");
    assert!(idle["open"].as_u64().unwrap() <= 64, "{idle}");
    assert!(idle["refused"].as_u64().unwrap() >= 2900, "{idle}");
    assert!(
        idle["errors"].to_string().contains("too many connections"),
        "{idle}"
    );
    // While nobody holds its connections: root is answered, the mount serves, memory is flat.
    let stat: Value = serde_json::from_str(&root.ok(&["stat", "--json"])).unwrap();
    assert!(stat["network"]["peers"].is_number(), "{stat}");
    let m = d.mountpoint.clone().unwrap();
    assert_eq!(std::fs::read(m.join(&cid)).unwrap(), b"still served\n");
    let rss = rss_kib(d.pid());
    assert!(rss < 300 << 10, "the daemon holds {} MiB", rss >> 10);
    writeln!(abuser.stdin.as_mut().unwrap()).unwrap();
    assert!(abuser.wait().unwrap().success());
}

/// A local user who keeps the want table full of prefetches (eight connections, each asking
/// for 1,024 blocks nobody has, again and again) cannot starve the mount: a file a peer has
/// still reads through it, because part of the wants, and of each peer's room for our wants,
/// is kept for readers.
#[test]
fn prefetches_cannot_starve_the_mount() {
    use std::os::unix::net::UnixStream;
    let seed = Root::new();
    let f = seed.dir.path().join("wanted");
    let data: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&f, &data).unwrap();
    let cid = seed.add_q(&[f.to_str().unwrap()]);
    let ds = Daemon::start(&seed, false, &["--no-dht"]);
    let root = Root::new();
    let d = Daemon::start(
        &root,
        true,
        &["--no-dht", "--bootstrap", &ds.addr, "--fetch-timeout", "20"],
    );
    crate::util::eventually(10, "connected", || {
        root.ok(&["swarm", "peers"]).lines().count() >= 1
    });
    let sock = root.path().join("daemon.sock");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooders: Vec<_> = (0..8u32)
        .map(|n| {
            let (sock, stop) = (sock.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&sock).unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut round = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let cids: Vec<String> = (0..1024u32)
                        .map(|i| {
                            let mh = cairn_store::HashAlg::Sha2_256
                                .digest(format!("junk {n} {round} {i}").as_bytes());
                            cairn_store::Cid::new_v1(0x55, mh).to_string()
                        })
                        .collect();
                    let req = serde_json::json!({"op": "prefetch", "cids": cids});
                    if writeln!(s, "{req}").is_err() {
                        return;
                    }
                    let mut line = String::new();
                    if r.read_line(&mut line).is_err() {
                        return;
                    }
                    round += 1;
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let wanted: Value = d.stats()["wants"].clone();
    let m = d.mountpoint.clone().unwrap();
    let got = std::fs::read(m.join(&cid));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flooders {
        let _ = f.join();
    }
    let got = got.expect("the file reads while the want table is full of prefetches");
    assert_eq!(got, data);
    assert!(
        wanted.as_u64() > Some(4096),
        "the flood did not fill the table: {wanted}"
    );
}
