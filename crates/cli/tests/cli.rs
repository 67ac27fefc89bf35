//! The binary starts and explains itself. (Its presence here also makes `cargo test` build
//! `target/debug/cairn`, which the workspace's end-to-end tests in `tests/` run.)

use std::process::Command;

#[test]
fn help_lists_the_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "init", "add", "cat", "get", "ls", "block", "refs", "dag", "verify", "repair", "stat",
    ] {
        assert!(text.contains(cmd), "--help should list {cmd}");
    }
}

#[test]
fn unknown_commands_fail() {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
