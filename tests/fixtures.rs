//! Every CAR in ../shared/fixtures: the good ones import with the roots, block counts and
//! trees that fixtures/manifest.json lists; the broken ones fail with a clear message and keep
//! what came before the bad section.

use serde_json::Value;

use crate::util::{sha256_hex, shared, Root};

fn manifest() -> Vec<Value> {
    let text = std::fs::read_to_string(shared().join("fixtures/manifest.json")).unwrap();
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// CARs that are broken on purpose, with what their error must say.
const BROKEN: &[(&str, &str)] = &[
    ("go-car/badheaderlength.car", "invalid CAR header"),
    ("go-car/badsectionlength.car", "CAR"),
    ("go-car/sample-corrupt-pragma.car", "CAR"),
    (
        "go-car/sample-rootless-v42.car",
        "unsupported CAR version 42",
    ),
    ("go-car/sample-v2-corrupt-data-and-index.car", "CAR"),
    (
        "go-car/sample-v1-tailing-corrupt-section.car",
        "ends in the middle of section",
    ),
];

struct Line {
    depth: usize,
    name: String,
    cid: String,
    desc: String,
}

fn parse_tree(tree: &[Value]) -> Vec<Line> {
    tree.iter()
        .filter_map(|l| {
            let l = l.as_str().unwrap();
            let trimmed = l.trim_start_matches(' ');
            if trimmed.starts_with("...") {
                return None;
            }
            let depth = (l.len() - trimmed.len()) / 2;
            let mut parts = trimmed.splitn(3, "  ");
            Some(Line {
                depth,
                name: parts.next().unwrap().to_owned(),
                cid: parts.next().unwrap().to_owned(),
                desc: parts.next().unwrap_or("").to_owned(),
            })
        })
        .collect()
}

fn field<'a>(desc: &'a str, key: &str) -> Option<&'a str> {
    desc.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// Checks one decoded tree line against the imported store.
fn check_line(root: &Root, file: &str, lines: &[Line], i: usize) {
    let line = &lines[i];
    let what = format!("{file}: {} {}", line.name, line.cid);
    if line.desc.contains("[MISSING BLOCK]") {
        root.fails(&["block", "stat", &line.cid]);
        return;
    }
    if line.desc.contains("[content incomplete") {
        let err = root.fails(&["cat", &line.cid]);
        assert!(err.contains("is not available"), "{what}: {err}");
        return;
    }
    if let Some(expected) = field(&line.desc, "sha256=") {
        let out = root.output(&["cat", &line.cid]);
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            sha256_hex(&out.stdout).starts_with(expected),
            "{what}: sha256"
        );
        let len: usize = field(&line.desc, "len=").unwrap().parse().unwrap();
        assert_eq!(out.stdout.len(), len, "{what}: length");
        return;
    }
    let entries = if line.desc.contains(" Directory ") {
        Some(
            line.desc
                .split_whitespace()
                .nth(2)
                .unwrap()
                .parse::<usize>()
                .unwrap(),
        )
    } else {
        field(&line.desc, "entries=").map(|n| n.parse::<usize>().unwrap())
    };
    if let Some(n) = entries {
        let listing: Vec<Value> = root
            .ok(&["ls", "--json", &line.cid])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(listing.len(), n, "{what}: entries");
        // Every child line under this one is one of the listed entries.
        for child in lines[i + 1..].iter().take_while(|c| c.depth > line.depth) {
            if child.depth == line.depth + 1 {
                assert!(
                    listing.iter().any(|e| e["name"] == child.name.as_str()
                        && e["cid"] == child.cid.as_str()),
                    "{what}: no entry {} {}",
                    child.name,
                    child.cid
                );
            }
        }
        return;
    }
    if let Some(target) = line.desc.strip_prefix("dag-pb Symlink -> ") {
        let dest = root.dir.path().join(format!("link-{i}"));
        root.ok(&["get", &line.cid, "-o", dest.to_str().unwrap()]);
        let got = std::fs::read_link(&dest).unwrap();
        assert_eq!(format!("'{}'", got.display()), target, "{what}");
        return;
    }
    if let Some(size) = line
        .desc
        .split_whitespace()
        .nth(2)
        .filter(|_| line.desc.contains(" block "))
    {
        let stat = root.ok(&["block", "stat", &line.cid]);
        assert!(stat.contains(&format!("Size: {size}\n")), "{what}: {stat}");
        return;
    }
    // Anything else (a dag-pb node without UnixFS data) must at least be present.
    root.ok(&["block", "stat", &line.cid]);
}

#[test]
fn every_good_car_imports_with_its_roots_and_tree() {
    let mut checked = 0;
    for entry in manifest() {
        let file = entry["file"].as_str().unwrap();
        if BROKEN.iter().any(|(f, _)| *f == file) || entry.get("parse_error").is_some() {
            continue;
        }
        let root = Root::new();
        let path = shared().join("fixtures").join(file);
        let out = root.ok(&["dag", "import", "--json", path.to_str().unwrap()]);
        let report: Value = serde_json::from_str(out.trim()).unwrap();
        let roots: Vec<&str> = report["roots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["cid"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = entry["roots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(roots, want, "{file}: roots");
        assert_eq!(report["blocks"], entry["blocks"], "{file}: blocks");
        let lines = parse_tree(entry["tree"].as_array().unwrap());
        for i in 0..lines.len() {
            check_line(&root, file, &lines, i);
        }
        // Exporting the first complete root and importing it elsewhere gives the same blocks.
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} fixtures checked");
}

#[test]
fn zero_length_padding_reads_as_the_end() {
    // go-car writes this with ZeroLengthSectionAsEOF; the blocks are sample-v1.car's.
    let root = Root::new();
    let f = shared().join("fixtures/go-car/sample-v1-with-zero-len-section.car");
    let out = root.ok(&["dag", "import", "--json", f.to_str().unwrap()]);
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["blocks"], 1049);
}

#[test]
fn broken_cars_fail_clearly_and_keep_what_came_before() {
    for (file, says) in BROKEN {
        let root = Root::new();
        let path = shared().join("fixtures").join(file);
        let err = root.fails(&["dag", "import", path.to_str().unwrap()]);
        assert!(
            err.contains(says),
            "{file}: error {err:?} should say {says:?}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{file}: one line: {err:?}");
        assert!(
            err.contains(file.rsplit('/').next().unwrap()),
            "{file}: names the file: {err}"
        );
    }
    // The truncated tail of sample-v1: every complete section before it is kept and verifies.
    let root = Root::new();
    let path = shared().join("fixtures/go-car/sample-v1-tailing-corrupt-section.car");
    let err = root.fails(&["dag", "import", path.to_str().unwrap()]);
    let kept: usize = err
        .split("kept the ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(kept, 1048, "{err}");
    // Sections may repeat a block: the files are the distinct blocks among them.
    let files = root.block_files().len();
    assert!(files > 1000 && files <= kept, "{files}");
    root.ok(&["verify"]);
}

#[test]
fn a_block_that_does_not_match_its_cid_is_refused() {
    // Flip one byte of a block's data inside a good CAR.
    let root = Root::new();
    let src = shared().join("fixtures/gateway-conformance/tooling/check/_fixtures/hello_ipfs.car");
    let mut bytes = std::fs::read(src).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0x20;
    let bad = root.dir.path().join("bad.car");
    std::fs::write(&bad, bytes).unwrap();
    let err = root.fails(&["dag", "import", bad.to_str().unwrap()]);
    assert!(err.contains("does not match its hash"), "{err}");
    assert!(err.contains("kept the 0 blocks before the error"), "{err}");
    assert!(root.block_files().is_empty());
}

#[test]
fn export_then_import_round_trips() {
    let a = Root::new();
    let src = shared().join("fixtures/go-car/simple-unixfs.car");
    a.ok(&["dag", "import", src.to_str().unwrap()]);
    let car = a.dir.path().join("out.car");
    a.ok(&[
        "dag",
        "export",
        "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT",
        "-o",
        car.to_str().unwrap(),
    ]);
    let b = Root::new();
    let out = b.ok(&["dag", "import", "--json", car.to_str().unwrap()]);
    let report: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(report["blocks"], 22);
    assert_eq!(a.block_files(), b.block_files());
    // Exporting a DAG with a missing block fails and names it.
    let c = Root::new();
    let src = shared().join("fixtures/go-car/simple-unixfs-missing-blocks.car");
    c.ok(&["dag", "import", src.to_str().unwrap()]);
    let err = c.fails(&[
        "dag",
        "export",
        "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT",
        "-o",
        car.to_str().unwrap(),
    ]);
    assert!(err.contains("is not available"), "{err}");
}
