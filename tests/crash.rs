//! `kill -9` in the middle of a large add: no corrupt or partial block is left under a
//! final name, and the add can simply be run again.

use std::{
    io::Write,
    process::Stdio,
    time::{Duration, Instant},
};

use crate::util::Root;

/// Writes `size` bytes of cheap pseudo-random data.
pub fn random_file(path: &std::path::Path, size: usize, seed: u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

#[test]
fn kill_9_mid_add_leaves_a_clean_store() {
    let root = Root::new();
    let big = root.dir.path().join("big.bin");
    random_file(&big, 768 << 20, 7);
    let b = big.to_str().unwrap();
    let mut child = root.cmd(&["add", b]).stdout(Stdio::null()).spawn().unwrap();
    let blocks = root.path().join("blocks");
    let start = Instant::now();
    loop {
        let n = std::fs::read_dir(&blocks).unwrap().count();
        if n > 100 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the add made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the add finished before it was killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let written = root.block_files().len();
    assert!(written > 90, "{written}");
    assert!(written < 3072 + 20, "the add was killed before it finished");

    let report = root.ok(&["verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(v["corrupt"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(v["strays"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(v["checked"].as_u64().unwrap() as usize, written);
    assert!(std::fs::read_dir(blocks.join(".tmp"))
        .unwrap()
        .next()
        .is_none());

    let want = root.add_q(&["-n", b]);
    assert_eq!(root.add_q(&[b]), want);
    assert!(root.ok(&["verify"]).contains(": 0 corrupt"));
}
