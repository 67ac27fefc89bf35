//! Names: `cairn key` as users type it. A user's keys live under their own config directory,
//! checked as ssh checks its keys; another user can neither read nor use them.

use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output},
};

use crate::util::{as_nobody, cairn_bin, reachable_bin};

/// `cairn` with `HOME` (and nothing of XDG) pointing at `home`.
fn cairn_at(home: &Path, args: &[&str]) -> Output {
    Command::new(cairn_bin())
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env("CAIRN_ROOT", home.join("root"))
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn err(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// gen, list, export, rm, import: the name survives the round trip; an export never
/// overwrites; names and files that are not keys are refused saying why.
#[test]
fn keys_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path();
    let k51 = ok(&cairn_at(home, &["key", "gen", "hello"]))
        .trim()
        .to_owned();
    assert!(k51.starts_with("k51"), "{k51}");
    let dir = home.join(".config/cairn/keys");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::metadata(dir.join("hello.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        ok(&cairn_at(home, &["key", "list"])),
        format!("hello {k51}\n")
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&cairn_at(home, &["key", "list", "--json"]))).unwrap();
    assert_eq!(json[0]["ipns"], k51.as_str());
    assert_eq!(json[0]["type"], "Ed25519");
    assert!(err(&cairn_at(home, &["key", "gen", "hello"])).contains("exists"));

    let out = home.join("hello.export");
    let out_s = out.to_str().unwrap();
    ok(&cairn_at(home, &["key", "export", "hello", "-o", out_s]));
    assert!(err(&cairn_at(home, &["key", "export", "hello", "-o", out_s])).contains("overwrites"));
    // Standard output gives the same bytes.
    assert_eq!(
        cairn_at(home, &["key", "export", "hello"]).stdout,
        std::fs::read(&out).unwrap()
    );
    ok(&cairn_at(home, &["key", "rm", "hello"]));
    assert!(err(&cairn_at(home, &["key", "export", "hello"])).contains("no key named"));
    let again = ok(&cairn_at(home, &["key", "import", "back", out_s]));
    assert_eq!(again.trim(), k51);

    for bad in ["../x", ".x", "a b"] {
        assert!(err(&cairn_at(home, &["key", "gen", bad])).contains("not a key name"));
    }
    let junk = home.join("junk");
    std::fs::write(&junk, b"not a key at all").unwrap();
    assert!(err(&cairn_at(
        home,
        &["key", "import", "j", junk.to_str().unwrap()]
    ))
    .contains("not a key"));
}

/// Loose modes, a symlinked key and a foreign owner are refused; the user nobody, even with
/// its HOME pointed at ours and our files opened up, can neither read nor use our key.
#[test]
fn keys_are_their_owners_alone() {
    let t = tempfile::tempdir().unwrap();
    let home = t.path();
    ok(&cairn_at(home, &["key", "gen", "mine"]));
    let dir = home.join(".config/cairn/keys");
    let key = dir.join("mine.key");

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = err(&cairn_at(home, &["key", "export", "mine"]));
    assert!(e.contains("chmod 600"), "{e}");
    assert!(err(&cairn_at(home, &["key", "list"])).contains("mine"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    std::os::unix::fs::symlink(&key, dir.join("alias.key")).unwrap();
    assert!(err(&cairn_at(home, &["key", "export", "alias"])).contains("symlink"));
    std::fs::remove_file(dir.join("alias.key")).unwrap();

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(err(&cairn_at(home, &["key", "list"])).contains("chmod 700"));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // nobody, told our HOME: the directory is 0700 and ours, so nothing inside is reachable.
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o755)).unwrap();
    for d in [home.join(".config"), home.join(".config/cairn")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = reachable_bin(t.path());
    let as_them = |args: &str| {
        as_nobody(&format!(
            "HOME={} CAIRN_ROOT=/nonexistent {} {args}",
            home.display(),
            bin.display()
        ))
    };
    assert!(!as_them("key export mine > /dev/null"));
    assert!(!as_nobody(&format!("cat {}", key.display())));
    // Even opened up to everyone, a key owned by someone else is refused to nobody.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        as_nobody(&format!("cat {} > /dev/null", key.display())),
        "the file is readable"
    );
    assert!(!as_them("key export mine > /dev/null"));
    assert!(!as_them("key list"));
    // The binary itself must be reachable by nobody for the refusals above to mean anything.
    assert!(
        as_them("--version > /dev/null"),
        "nobody cannot run {}",
        bin.display()
    );
}
