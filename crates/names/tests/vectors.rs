//! The IPNS specification's six test records (`../shared/vectors/ipns/`): each file is named
//! by the name that signed it and its case; the verdicts are the specification's (V2 rules).

use std::path::PathBuf;

use cairn_names::{record, Name, RecordError};

fn shared() -> PathBuf {
    let p = match std::env::var_os("CAIRN_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    assert!(
        p.is_dir(),
        "{} is missing: clone cairn beside shared/ or set CAIRN_SHARED",
        p.display()
    );
    p
}

fn now() -> cairn_names::time::Nanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128
}

#[test]
fn the_specifications_records_get_their_verdicts() {
    let dir = shared().join("vectors/ipns");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(stem) = file.strip_suffix(".ipns-record") else {
            continue;
        };
        let (name, case) = stem.split_once('_').unwrap();
        let name: Name = name.parse().unwrap();
        assert_eq!(
            name.to_string(),
            stem.split('_').next().unwrap(),
            "k51 form"
        );
        let bytes = std::fs::read(&path).unwrap();
        let got = record::verify(&name, &bytes, now());
        match case {
            "v1-v2" | "v2" | "v1-v2-broken-signature-v1" => {
                let r = got.unwrap_or_else(|e| panic!("{file}: {e}"));
                assert!(r.value.starts_with("/ipfs/") || r.value.starts_with("/ipns/"));
                assert!(r.validity > now());
                // The key that signed it is the name's: any other name refuses it.
                let other: Name = "k51qzi5uqu5dit2ku9mutlfgwyz8u730on38kd10m97m36bjt66my99hb6103f"
                    .parse()
                    .unwrap();
                if other != name {
                    assert!(record::verify(&other, &bytes, now()).is_err(), "{file}");
                }
            }
            "v1" => assert_eq!(got, Err(RecordError::NoSignatureV2), "{file}"),
            "v1-v2-broken-v1-value" => {
                assert_eq!(got, Err(RecordError::V1Mismatch("value")), "{file}")
            }
            "v1-v2-broken-signature-v2" => {
                assert_eq!(got, Err(RecordError::BadSignature), "{file}")
            }
            other => panic!("a vector of an unknown case: {other}"),
        }
        seen += 1;
    }
    assert_eq!(seen, 6);
}
