//! Replays every input under `fuzz/regressions/{target}/` through its target on stable Rust:
//! each is an input that once made a target fail, kept so that the bug stays fixed. CI runs
//! this; it does not run the fuzzer.

use std::path::Path;

#[test]
fn every_regression_input_passes_its_target() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions");
    let mut replayed = 0;
    for (name, target) in cairn_fuzz::TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(name)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            eprintln!("{name}: {}", path.display());
            target(&input);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no regression inputs under {}", dir.display());
}
