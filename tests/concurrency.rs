//! Several writers into one root at once.

use std::process::Stdio;

use crate::{
    crash::random_file,
    util::{write_tree, Root},
};

#[test]
fn four_processes_add_into_one_root_at_once() {
    let root = Root::new();
    let d = root.dir.path();
    // Two trees sharing most of their files, a large file, and one file added twice.
    let files: Vec<(String, String)> = (0..400)
        .map(|i| (format!("f{i:03}/x.txt"), format!("shared {}\n", i % 50)))
        .collect();
    write_tree(&d.join("t1"), &files);
    write_tree(&d.join("t2"), &files);
    std::fs::write(d.join("t2/extra.txt"), "only in t2\n").unwrap();
    random_file(&d.join("big.bin"), 48 << 20, 3);
    let jobs: Vec<Vec<String>> = vec![
        vec!["-r".into(), d.join("t1").display().to_string()],
        vec!["-r".into(), d.join("t2").display().to_string()],
        vec![d.join("big.bin").display().to_string()],
        vec![
            "--cid-version=1".into(),
            d.join("big.bin").display().to_string(),
        ],
    ];
    let children: Vec<_> = jobs
        .iter()
        .map(|args| {
            let mut a = vec!["add", "-Q"];
            a.extend(args.iter().map(String::as_str));
            root.cmd(&a)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut roots = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        roots.push(String::from_utf8(out.stdout).unwrap().trim().to_owned());
    }
    // Each add gives the CID it gives alone.
    for (args, cid) in jobs.iter().zip(&roots) {
        let mut a = vec!["-n"];
        a.extend(args.iter().map(String::as_str));
        assert_eq!(&root.add_q(&a), cid);
    }
    assert!(root.ok(&["verify"]).contains(": 0 corrupt"));
    // Every block of every DAG is present, and the index knows every block file.
    for cid in &roots {
        root.ok(&["refs", "-r", cid]);
    }
    let stat: serde_json::Value = serde_json::from_str(&root.ok(&["stat", "--json"])).unwrap();
    assert_eq!(
        stat["blocks"].as_u64().unwrap() as usize,
        root.block_files().len()
    );
}

#[test]
fn many_threads_put_the_same_blocks() {
    use cairn_store::{Cid, HashAlg, Store};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path()).unwrap();
    let blocks: Vec<(Cid, Vec<u8>)> = (0..200u32)
        .map(|i| {
            let data = format!("block {i}").repeat(100).into_bytes();
            (Cid::new_v1(0x55, HashAlg::Sha2_256.digest(&data)), data)
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..8 {
            let (store, blocks) = (&store, &blocks);
            s.spawn(move || {
                for k in 0..blocks.len() {
                    let (cid, data) = &blocks[(k + t * 25) % blocks.len()];
                    store.put(cid, data).unwrap();
                }
            });
        }
    });
    store.flush().unwrap();
    for (cid, data) in &blocks {
        assert_eq!(store.get(cid).unwrap().as_deref(), Some(&data[..]));
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("blocks"))
            .unwrap()
            .count(),
        200 + 2
    );
}
