//! User environments: apps built by gcc for their placeholder prefix, installed into a
//! profile, run through PATH from the real mount, upgraded, rolled back, collected.

use std::{
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use crate::{
    mount::Mount,
    util::{as_nobody, Root},
};

/// A root with its mount at R/store (where app links point) and a home directory.
struct Env {
    root: Root,
    home: PathBuf,
    _mount: Option<Mount>,
}

impl Env {
    fn new() -> Env {
        Env::with_mount(true)
    }

    /// `mount`: mount the store with `cairn mount` (else a daemon of the test's does).
    fn with_mount(mount: bool) -> Env {
        let root = Root::new();
        std::fs::set_permissions(root.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let home = root.dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let mount = mount.then(|| Mount::start_at(&root, &root.path().join("store"), &[]));
        Env {
            root,
            home,
            _mount: mount,
        }
    }

    fn cairn(&self, args: &[&str]) -> Output {
        self.root
            .cmd(args)
            .env("HOME", &self.home)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cairn(args);
        assert!(
            o.status.success(),
            "cairn {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let o = self.cairn(args);
        assert!(!o.status.success(), "cairn {args:?} should have failed");
        String::from_utf8_lossy(&o.stderr).into_owned()
    }

    /// Builds app `name` at `version` with gcc for the placeholder prefix: `bin/{name}`
    /// prints its version and a data file from its own `share/`; `extra` files are added
    /// as given. Adds it with `--app --name` (unpinned) and returns its CID.
    fn app(&self, name: &str, version: &str, extra: &[(&str, &str)]) -> String {
        let prefix = self
            .ok(&["app", "placeholder", "--prefix"])
            .trim()
            .to_owned();
        let out = self.root.dir.path().join(format!("build-{name}-{version}"));
        let src = out.with_extension("c");
        std::fs::create_dir_all(out.join("bin")).unwrap();
        std::fs::create_dir_all(out.join(format!("share/{name}"))).unwrap();
        std::fs::write(
            &src,
            format!(
                r#"#include <stdio.h>
int main(void) {{
    char buf[128] = {{0}};
    FILE *f = fopen("{prefix}/share/{name}/data.txt", "r");
    if (!f) {{ perror("data"); return 1; }}
    fread(buf, 1, sizeof buf - 1, f);
    printf("{name} {version}: %s", buf);
    return 0;
}}
"#
            ),
        )
        .unwrap();
        let st = Command::new("gcc")
            .arg("-o")
            .arg(out.join(format!("bin/{name}")))
            .arg(&src)
            .status()
            .expect("gcc (scripts/deps.sh installs it)");
        assert!(st.success());
        std::fs::write(
            out.join(format!("share/{name}/data.txt")),
            format!("data of {name} {version}\n"),
        )
        .unwrap();
        for (p, body) in extra {
            let f = out.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, body).unwrap();
        }
        self.ok(&[
            "add",
            "--app",
            "-Q",
            "--pin=false",
            "--name",
            name,
            out.to_str().unwrap(),
        ])
        .trim()
        .to_owned()
    }

    /// Runs `prog` found through PATH = ~/.cairn-profile/bin (and nothing else).
    fn run(&self, prog: &str) -> Option<String> {
        let o = Command::new("/bin/sh")
            .arg("-c")
            .arg(prog)
            .env("PATH", self.home.join(".cairn-profile/bin"))
            .output()
            .unwrap();
        o.status
            .success()
            .then(|| String::from_utf8(o.stdout).unwrap())
    }

    fn list(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["env", "list", "--json"])).unwrap()
    }
}

/// The whole life of a profile: install two apps and run both through PATH, upgrade one,
/// roll back (the old one runs again), diff, remove one, keep one generation, collect: the
/// kept generation's blocks remain and verify, the dropped ones' are gone.
#[test]
fn install_upgrade_rollback_remove_and_collect() {
    let e = Env::new();
    assert_eq!(
        e.ok(&["env"]).trim(),
        "export PATH=\"$HOME/.cairn-profile/bin:$PATH\""
    );
    assert_eq!(
        e.ok(&["env", "--shell", "fish"]).trim(),
        "set -gx PATH $HOME/.cairn-profile/bin $PATH"
    );
    let hello1 = e.app("hello", "1.0", &[]);
    let world = e.app("world", "1.0", &[]);
    e.ok(&["env", "install", &hello1, &world]);
    assert_eq!(
        std::fs::read_link(e.home.join(".cairn-profile")).unwrap(),
        e.root.path().join("profiles/per-user/root/current")
    );
    assert_eq!(e.run("hello").unwrap(), "hello 1.0: data of hello 1.0\n");
    assert_eq!(e.run("world").unwrap(), "world 1.0: data of world 1.0\n");

    let hello2 = e.app("hello", "2.0", &[]);
    e.ok(&["env", "install", &hello2]);
    assert_eq!(e.run("hello").unwrap(), "hello 2.0: data of hello 2.0\n");
    e.ok(&["env", "rollback"]);
    assert_eq!(e.run("hello").unwrap(), "hello 1.0: data of hello 1.0\n");
    e.ok(&["env", "switch", "2"]);
    assert_eq!(e.run("hello").unwrap(), "hello 2.0: data of hello 2.0\n");
    assert_eq!(
        e.ok(&["env", "diff", "1", "2"]),
        format!("~ hello {hello1} -> {hello2}\n")
    );

    e.ok(&["env", "remove", "world"]);
    assert_eq!(e.run("world"), None, "removed from PATH");
    assert_eq!(e.run("hello").unwrap(), "hello 2.0: data of hello 2.0\n");
    let list = e.list();
    let gens = list.as_array().unwrap();
    assert_eq!(gens.len(), 3);
    assert_eq!(gens[2]["current"], true);
    assert_eq!(gens[2]["apps"][0]["name"], "hello");
    assert_eq!(gens[2]["apps"].as_array().unwrap().len(), 1);
    assert_eq!(
        e.ok(&["env", "diff", "2", "3"]),
        format!("- world {world}\n")
    );

    // The same set of apps makes the same environment.
    e.ok(&["env", "install", &world]);
    e.ok(&["env", "remove", "world"]);
    let list = e.list();
    assert_eq!(list[2]["cid"], list[4]["cid"]);

    e.ok(&["env", "gc", "--keep", "1"]);
    assert_eq!(e.list().as_array().unwrap().len(), 1);
    e.ok(&["gc"]);
    let has = |cid: &str| e.cairn(&["block", "stat", cid]).status.success();
    assert!(has(&hello2), "the kept generation's app");
    assert!(!has(&hello1), "only dropped generations kept hello 1.0");
    assert!(!has(&world), "only dropped generations kept world");
    e.ok(&["verify"]);
    assert_eq!(e.run("hello").unwrap(), "hello 2.0: data of hello 2.0\n");
}

/// Two apps that provide the same path: a clear error naming both and the path, and no
/// new generation; with a priority, the lower number wins.
#[test]
fn a_path_two_apps_provide_needs_a_priority() {
    let e = Env::new();
    let a = e.app("alpha", "1", &[("bin/tool", "alpha's tool\n")]);
    let b = e.app("beta", "1", &[("bin/tool", "beta's tool\n")]);
    e.ok(&["env", "install", &a]);
    let err = e.fails(&["env", "install", &b]);
    assert!(
        err.contains("bin/tool is provided by both alpha") && err.contains("beta"),
        "{err}"
    );
    assert_eq!(e.list().as_array().unwrap().len(), 1, "no generation made");
    e.ok(&["env", "install", &b, "--priority", "1"]);
    let tool = e.home.join(".cairn-profile/bin/tool");
    assert_eq!(std::fs::read_to_string(&tool).unwrap(), "beta's tool\n");
    // Both apps' own programs are there: bin/ is merged, not taken whole.
    assert!(e.run("alpha").is_some() && e.run("beta").is_some());
}

/// A reader looking at the profile's bin/ in another process while 100 switches happen
/// never finds it missing: `current` is replaced by rename.
#[test]
fn a_reader_never_sees_a_missing_file_during_switches() {
    let e = Env::new();
    let one = e.app("hello", "1.0", &[]);
    e.ok(&["env", "install", &one]);
    let two = e.app("hello", "2.0", &[]);
    e.ok(&["env", "install", &two]);
    let file = e.home.join(".cairn-profile/bin/hello");
    let log = e.root.dir.path().join("reader.log");
    let stop = e.root.dir.path().join("stop");
    let mut reader = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "n=0; while [ ! -e '{s}' ]; do if [ -x '{f}' ]; then n=$((n+1)); \
             else echo MISSING; fi; done > '{l}'; echo $n > '{l}.count'",
            s = stop.display(),
            f = file.display(),
            l = log.display()
        ))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    for i in 0..100 {
        e.ok(&["env", "switch", if i % 2 == 0 { "1" } else { "2" }]);
    }
    std::fs::write(&stop, "").unwrap();
    assert!(reader.wait().unwrap().success());
    let seen: u64 = std::fs::read_to_string(log.with_extension("log.count"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(seen > 100, "the reader looked only {seen} times");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "",
        "the reader saw a gap"
    );
}

/// Two users: one cannot change or collect the other's profile, and a directory squatted
/// under someone's name is refused, not used.
#[test]
fn one_user_cannot_change_or_collect_anothers_profile() {
    let e = Env::new();
    let one = e.app("hello", "1.0", &[]);
    e.ok(&["env", "install", &one]);
    let two = e.app("hello", "2.0", &[]);
    e.ok(&["env", "install", &two]);
    let mine = e.root.path().join("profiles/per-user/root");
    let before = e.list();
    let cairn = crate::util::cairn_bin();
    let r = e.root.path();
    for attack in [
        format!("ln -sfn generations/1 {}/current", mine.display()),
        format!("rm -f {}/generations/1", mine.display()),
        format!(
            "mv {}/current {}/current.old",
            mine.display(),
            mine.display()
        ),
        format!("ln -s /etc {}/generations/9", mine.display()),
    ] {
        assert!(!as_nobody(&attack), "nobody could: {attack}");
    }
    // nobody's env commands work on nobody's profile only.
    let home = e.root.dir.path().join("nobody-home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o777)).unwrap();
    as_nobody(&format!(
        "HOME={} {} --root {} env gc --keep 0",
        home.display(),
        cairn.display(),
        r.display()
    ));
    assert_eq!(e.list(), before, "root's profile changed");
    assert_eq!(e.run("hello").unwrap(), "hello 2.0: data of hello 2.0\n");

    // A squatter makes a directory under another user's name before they ever used cairn
    // env: it is refused, never used.
    let other = Env::new();
    let per_user = other.root.path().join("profiles/per-user");
    assert!(as_nobody(&format!("mkdir {}/root", per_user.display())));
    let app = other.app("hello", "1.0", &[]);
    let err = other.fails(&["env", "install", &app]);
    assert!(err.contains("belongs to uid 65534"), "{err}");
}

/// Installing an app that is not here fetches it first, whole and verified, through the
/// running daemon (which also mounts the store), then switches; the app runs through PATH.
#[test]
fn installing_an_app_from_a_peer_fetches_it_first() {
    use crate::peers::Daemon;
    let a = Root::new();
    let build = a.dir.path().join("greeter");
    std::fs::create_dir_all(build.join("bin")).unwrap();
    std::fs::write(
        build.join("bin/greet"),
        "#!/bin/sh\necho greetings from a peer\n",
    )
    .unwrap();
    std::fs::set_permissions(
        build.join("bin/greet"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(build.join("README"), vec![b'x'; 3 << 20]).unwrap();
    let cid = a.add_q(&["--app", "--name", "greeter", build.to_str().unwrap()]);
    let da = Daemon::start(&a, false, &[]);

    let b = Env::with_mount(false);
    let _db = Daemon::start(&b.root, true, &["--bootstrap", &da.addr]);
    assert!(!b.cairn(&["block", "stat", &cid]).status.success());
    let o = b.cairn(&["env", "install", &cid]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("fetching"), "{err}");
    assert!(err.contains("installing greeter"), "{err}");
    assert_eq!(b.run("greet").unwrap(), "greetings from a peer\n");
    b.ok(&["verify"]);
}
