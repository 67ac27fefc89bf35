//! The app view: programs built by gcc into a placeholder prefix, added with `--app`, run
//! straight from `R/store/app/<cid>/` on a real mount: they load their own libraries, read
//! and `mmap` their own data, and run their own scripts through their own shebangs.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{mount::Mount, util::Root};

/// `cmd` with `args`, which must succeed; its stdout.
fn run(cmd: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
    let cmd = cmd.as_ref();
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/deps.sh installs what tests run)"));
    assert!(
        out.status.success(),
        "{cmd:?} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write(path: &Path, body: impl AsRef<[u8]>, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Bytes of a data file with the placeholder where a page and a chunk boundary cut it.
const STRADDLES: [u64; 3] = [4096 - 20, 262_144 - 30, 300_000];

/// Builds a small app into `out` for install prefix `prefix`: a program linked against its
/// own library by RPATH that reads its own data file, a program that mmaps its own data, a
/// shell script run by an interpreter named through the prefix, and a symlink into it.
fn build_app(src: &Path, out: &Path, prefix: &str) {
    write(
        &src.join("greet.c"),
        "const char *greeting(void) { return \"hello from my own lib\"; }\n",
        0o644,
    );
    write(
        &src.join("hello.c"),
        r#"#include <stdio.h>
const char *greeting(void);
int main(void) {
    printf("%s\n", greeting());
    FILE *f = fopen(PREFIX "/share/hello/message.txt", "r");
    if (!f) { perror(PREFIX "/share/hello/message.txt"); return 1; }
    char buf[256]; size_t n = fread(buf, 1, sizeof buf - 1, f); buf[n] = 0;
    printf("data: %s", buf);
    return 0;
}
"#,
        0o644,
    );
    // Prints the bytes at each offset of its own data file as mapped pages show them, and the
    // sum of every byte (so a page served wrong anywhere changes the output).
    write(
        &src.join("mapper.c"),
        r#"#include <stdio.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
int main(int argc, char **argv) {
    int fd = open(PREFIX "/share/hello/table.bin", O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    struct stat st; fstat(fd, &st);
    unsigned char *p = mmap(0, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    unsigned long sum = 0;
    for (off_t i = 0; i < st.st_size; i++) sum += p[i];
    for (int a = 1; a < argc; a++) {
        long at; sscanf(argv[a], "%ld", &at);
        printf("%.59s\n", (char *)p + at);
    }
    printf("sum %lu\n", sum);
    return 0;
}
"#,
        0o644,
    );
    let prefix_def = format!("-DPREFIX=\"{prefix}\"");
    let lib = out.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(out.join("bin")).unwrap();
    run(
        "gcc",
        &[
            "-shared",
            "-fPIC",
            "-o",
            lib.join("libgreet.so").to_str().unwrap(),
            src.join("greet.c").to_str().unwrap(),
        ],
    );
    run(
        "gcc",
        &[
            &prefix_def,
            "-o",
            out.join("bin/hello").to_str().unwrap(),
            src.join("hello.c").to_str().unwrap(),
            "-L",
            lib.to_str().unwrap(),
            "-lgreet",
            &format!("-Wl,-rpath,{prefix}/lib"),
        ],
    );
    run(
        "gcc",
        &[
            &prefix_def,
            "-o",
            out.join("bin/mapper").to_str().unwrap(),
            src.join("mapper.c").to_str().unwrap(),
        ],
    );
    write(
        &out.join("share/hello/message.txt"),
        "read from my own share/\n",
        0o644,
    );
    let mut table: Vec<u8> = (0..310_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    for at in STRADDLES {
        let at = at as usize;
        table[at..at + 59].copy_from_slice(cairn_app::PLACEHOLDER.as_bytes());
    }
    write(&out.join("share/hello/table.bin"), &table, 0o644);
    // A script whose interpreter is found through the prefix (a symlink in the app to
    // /bin/sh), which sources a file of its own.
    std::os::unix::fs::symlink("/bin/sh", out.join("bin/sh")).unwrap();
    write(
        &out.join("bin/tool"),
        format!("#!{prefix}/bin/sh\n. {prefix}/share/hello/lib.sh\nsay \"$@\"\n"),
        0o755,
    );
    write(
        &out.join("share/hello/lib.sh"),
        format!("say() {{ echo \"tool says $*; my prefix is {prefix}\"; }}\n"),
        0o644,
    );
    std::os::unix::fs::symlink(format!("{prefix}/bin/hello"), out.join("bin/hello-link")).unwrap();
}

/// A root with the app built and added; returns the app CID and the build directory.
fn added_app(root: &Root) -> (String, PathBuf) {
    let prefix = root
        .ok(&["app", "placeholder", "--prefix"])
        .trim()
        .to_owned();
    assert_eq!(
        prefix,
        format!(
            "{}/store/app/{}",
            root.path().display(),
            cairn_app::PLACEHOLDER
        )
    );
    let out = root.dir.path().join("hello-1.0");
    build_app(&root.dir.path().join("src"), &out, &prefix);
    let cid = root.add_q(&["--app", "--name", "hello", out.to_str().unwrap()]);
    (cid, out)
}

/// gcc's programs run from the app view: the library found by RPATH, data read and mapped
/// from their own prefix, the script's shebang and sourced file, a symlink's target; the
/// same bytes through the unixfs view still hold the placeholder.
#[test]
fn programs_built_for_a_placeholder_prefix_run_from_the_app_view() {
    let root = Root::new();
    let (cid, out) = added_app(&root);
    assert_eq!(cid.len(), cairn_app::LEN, "{cid}");
    let m = Mount::start_at(&root, &root.path().join("store"), &[]);
    let app = m.path(&format!("app/{cid}"));
    let prefix = app.to_str().unwrap().to_owned();

    assert_eq!(
        run(app.join("bin/hello"), &[]),
        "hello from my own lib\ndata: read from my own share/\n"
    );
    assert_eq!(
        run(app.join("bin/hello-link"), &[]),
        run(app.join("bin/hello"), &[])
    );
    assert_eq!(
        std::fs::read_link(app.join("bin/hello-link")).unwrap(),
        app.join("bin/hello")
    );
    assert_eq!(
        run(app.join("bin/tool"), &["hi"]),
        format!("tool says hi; my prefix is {prefix}\n")
    );
    // ldd names the library at its rewritten path.
    let ldd = run("ldd", &[app.join("bin/hello").to_str().unwrap()]);
    assert!(ldd.contains(&format!("{prefix}/lib/libgreet.so")), "{ldd}");

    // mmap: every mapped page as read() serves it, the CID where the placeholder was,
    // including across a page boundary and the importer's chunk boundary.
    let offsets: Vec<String> = STRADDLES.iter().map(|o| o.to_string()).collect();
    let args: Vec<&str> = offsets.iter().map(String::as_str).collect();
    let mapped = run(app.join("bin/mapper"), &args);
    let served = std::fs::read(app.join("share/hello/table.bin")).unwrap();
    let mut want = String::new();
    for o in STRADDLES {
        assert_eq!(&served[o as usize..o as usize + 59], cid.as_bytes());
        want.push_str(&cid);
        want.push('\n');
    }
    let sum: u64 = served.iter().map(|b| *b as u64).sum();
    want.push_str(&format!("sum {sum}\n"));
    assert_eq!(mapped, want);
    // Sizes and modes as built.
    for rel in [
        "bin/hello",
        "bin/mapper",
        "bin/tool",
        "share/hello/table.bin",
    ] {
        let built = std::fs::metadata(out.join(rel)).unwrap();
        let shown = std::fs::metadata(app.join(rel)).unwrap();
        assert_eq!(shown.len(), built.len(), "{rel}");
        assert_eq!(
            shown.permissions().mode() & 0o777,
            built.permissions().mode() & 0o777,
            "{rel}"
        );
    }
    // Every byte but the references is the stored byte; the unixfs view shows it unpatched.
    let stored = std::fs::read(out.join("share/hello/table.bin")).unwrap();
    let node: serde_json::Value =
        serde_json::from_str(&root.ok(&["app", "show", &cid, "--json"])).unwrap();
    let content = node["content"].as_str().unwrap();
    let plain = std::fs::read(m.path(&format!("unixfs/{content}/share/hello/table.bin"))).unwrap();
    assert_eq!(plain, stored);
    let mut patched = stored.clone();
    for o in STRADDLES {
        patched[o as usize..o as usize + 59].copy_from_slice(cid.as_bytes());
    }
    assert_eq!(served, patched);
    assert_eq!(node["name"], "hello");
    assert_eq!(
        node["refs"]["share/hello/table.bin"],
        serde_json::json!(STRADDLES)
    );
}

/// The same tree gives the same app CID, with or without storing; the app node's refs are
/// what the bytes hold; a partial placeholder and one inside gzip data are warned about.
#[test]
fn the_same_tree_gives_the_same_app_and_warnings_name_what_cannot_work() {
    let root = Root::new();
    let (cid, out) = added_app(&root);
    let again = root.add_q(&["--app", "--name", "hello", out.to_str().unwrap()]);
    assert_eq!(again, cid);
    let hashed = root.add_q(&["--app", "--name", "hello", "-n", out.to_str().unwrap()]);
    assert_eq!(hashed, cid);
    let other_name = root.add_q(&["--app", "--name", "hullo", out.to_str().unwrap()]);
    assert_ne!(other_name, cid);

    let p = cairn_app::PLACEHOLDER;
    write(
        &out.join("share/short.txt"),
        format!("cut: {}\n", &p[..40]),
        0o644,
    );
    let mut gz = flate2_gzip(format!("inside: {p}\n").as_bytes());
    write(&out.join("share/packed.gz"), &mut gz, 0o644);
    let o = root.output(&["add", "--app", "-Q", out.to_str().unwrap()]);
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("warning: share/short.txt: at byte 5"), "{err}");
    assert!(err.contains("warning: share/packed.gz"), "{err}");
    assert!(!err.contains("table.bin"), "{err}");

    let f = root.dir.path().join("a-file");
    std::fs::write(&f, "x").unwrap();
    let e = root.fails(&["add", "--app", f.to_str().unwrap()]);
    assert!(e.contains("not a directory"), "{e}");
    let e = root.fails(&["add", "--name", "x", f.to_str().unwrap()]);
    assert!(e.contains("--name names an app"), "{e}");
}

/// gzip of `data`, by the system's gzip (so the test does not trust the importer's decoder).
fn flate2_gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    child.wait_with_output().unwrap().stdout
}

/// An app node whose recorded offset does not hold the placeholder (a corrupt or forged
/// node) fails reads that cover it with EIO, never patches other bytes; reads elsewhere in
/// the file work. A CID that is not an app is not under `app/`, and an app is not under
/// `webapp/`.
#[test]
fn a_wrong_offset_is_eio_and_other_cids_are_not_apps() {
    let root = Root::new();
    let (cid, _) = added_app(&root);
    let bytes = root.output(&["block", "get", &cid]).stdout;
    let mut app = cairn_app::AppNode::decode(&bytes).unwrap();
    let offsets = app.refs.get_mut("share/hello/table.bin").unwrap();
    offsets[1] += 1;
    let (forged, block) = app.encode().unwrap();
    let file = root.dir.path().join("forged.cbor");
    std::fs::write(&file, block).unwrap();
    let put = root.ok(&[
        "block",
        "put",
        "--cid-codec",
        "dag-cbor",
        file.to_str().unwrap(),
    ]);
    let forged = cairn_store::block_name(&forged);
    assert_eq!(put.trim(), forged);

    let m = Mount::start_at(&root, &root.path().join("store"), &[]);
    let table = m.path(&format!("app/{forged}/share/hello/table.bin"));
    let f = std::fs::File::open(&table).unwrap();
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4096];
    // Far from the forged offset: fine, and the first reference is patched.
    f.read_exact_at(&mut buf, 0).unwrap();
    let mut page = vec![0u8; 8192];
    f.read_exact_at(&mut page, 0).unwrap();
    assert_eq!(&page[4076..4076 + 59], forged.as_bytes());
    let err = f.read_exact_at(&mut buf, 262_144 - 4096).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    // The genuine app is untouched.
    let good = std::fs::read(m.path(&format!("app/{cid}/share/hello/table.bin"))).unwrap();
    assert_eq!(&good[262_144 - 30..262_144 + 29], cid.as_bytes());

    // Not an app: a UnixFS directory, a raw block, an app under webapp/.
    let node: serde_json::Value =
        serde_json::from_str(&root.ok(&["app", "show", &cid, "--json"])).unwrap();
    let content = node["content"].as_str().unwrap();
    for p in [
        format!("app/{content}"),
        format!("webapp/{cid}"),
        format!(
            "app/{}",
            cairn_store::block_name(&cairn_store::parse_cid(content).unwrap())
        ),
    ] {
        let e = std::fs::metadata(m.path(&p)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{p}");
    }
    let mut listed: Vec<String> = std::fs::read_dir(m.path("app"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    listed.sort();
    assert_eq!(listed, vec![cid.clone()], "app/ lists the pinned apps");
    assert!(std::fs::read_dir(m.path("webapp"))
        .unwrap()
        .next()
        .is_none());
}
