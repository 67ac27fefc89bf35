//! The webapp view, served by real static web servers (nginx from Debian, Python's
//! http.server) and loaded by a real browser (headless Chromium), which runs the page's
//! JavaScript; the test reads what the script wrote into the DOM and saves a screenshot.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{mount::Mount, util::Root};

/// The example web app of the project.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/webapp")
}

/// A loopback port nobody listens on (for a server that takes a port number).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Waits until the port answers.
    fn ready(mut self) -> Server {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(st) = self.child.try_wait().unwrap() {
                panic!("the server exited with {st}");
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no server");
            std::thread::sleep(Duration::from_millis(50));
        }
        self
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    /// SIGTERM, so that nginx's master stops its workers too (SIGKILL would orphan them,
    /// holding the test's output open).
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn nginx(site: &Path, dir: &Path) -> Server {
    let port = free_port();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nworker_processes 1;\nuser nobody nogroup;\npid {d}/nginx.pid;\n\
             error_log {d}/logs/error.log;\nevents {{}}\n\
             http {{\n  include /etc/nginx/mime.types;\n  access_log off;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n    root {site};\n\
             index index.html;\n  }}\n}}\n",
            d = dir.display(),
            site = site.display(),
        ),
    )
    .unwrap();
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.join("logs/error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (scripts/deps.sh installs it)");
    Server { child, port }.ready()
}

fn python_http(site: &Path) -> Server {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .arg("--directory")
        .arg(site)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    Server { child, port }.ready()
}

/// A plain HTTP/1.0 GET: status line, headers (lowercased names) and body.
fn get(port: u16, path: &str) -> (String, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header end");
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, all[split + 4..].to_vec())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// Headless Chromium with the flags this machine needs (no sandbox as root, no network
/// beyond loopback) and a profile of its own.
fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("chromium (scripts/deps.sh installs it)")
}

/// What a static server must get right from the mount, and what the browser makes of it.
fn check_site(server: &Server, name: &str, scratch: &Path) {
    let files = example();
    let (status, h, body) = get(server.port, "/");
    assert!(status.contains(" 200 "), "{name}: {status}");
    assert_eq!(body, std::fs::read(files.join("index.html")).unwrap());
    assert!(header(&h, "content-type").starts_with("text/html"), "{h:?}");
    for (path, mime) in [
        ("/style.css", "text/css"),
        ("/app.js", "javascript"),
        ("/img/cairn.png", "image/png"),
        ("/data/greeting.json", "application/json"),
    ] {
        let (status, h, body) = get(server.port, path);
        assert!(status.contains(" 200 "), "{name} {path}: {status}");
        assert!(
            header(&h, "content-type").contains(mime),
            "{name} {path}: {h:?}"
        );
        assert_eq!(
            body,
            std::fs::read(files.join(&path[1..])).unwrap(),
            "{path}"
        );
    }
    let (status, _, body) = get(server.port, "/about/");
    assert!(status.contains(" 200 "), "{name}: {status}");
    assert_eq!(body, std::fs::read(files.join("about/index.html")).unwrap());
    // `..` never leaves the site: the servers resolve it inside their root, and the mount
    // gives them nothing above the app's directory to find anyway.
    let (status, _, body) = get(server.port, "/../../../etc/passwd");
    assert!(
        !status.contains(" 200 ") || !body.starts_with(b"root:"),
        "{name}"
    );
    let (status, _, _) = get(server.port, "/missing.html");
    assert!(status.contains(" 404 "), "{name}: {status}");

    // The browser runs the script (which fetches data by a relative URL) and loads the image.
    let profile = scratch.join(format!("chromium-{name}"));
    let dom = chromium(&profile, &["--dump-dom", &server.url("/")]);
    let dom_text = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom_text.contains("the script ran: hello from data/greeting.json"),
        "{name}: {dom_text}\n{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(dom_text.contains("image 16x16"), "{name}: {dom_text}");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("webapp");
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    let out = chromium(
        &profile,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=800,600",
            &server.url("/"),
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "{name}: no screenshot at {}: {e}\n{}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG"), "{name}");
    eprintln!("webapp: screenshot through {name} at {}", shot.display());
}

/// The example web app, added with `--webapp` and pinned, is listed under `webapp/` and
/// nowhere else a view selects; nginx and Python's http.server serve it from the mount with
/// the right types, index files and relative links; Chromium runs its JavaScript.
#[test]
fn the_example_webapp_is_served_by_nginx_and_python_and_runs_in_chromium() {
    let root = Root::new();
    use std::os::unix::fs::PermissionsExt;
    // nginx's workers run as nobody: they must reach the mount.
    std::fs::set_permissions(root.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cid = root.add_q(&["--webapp", example().to_str().unwrap()]);
    let plain = root.add_q(&["-r", "--cid-version=1", example().to_str().unwrap()]);
    let m = Mount::start_at(&root, &root.path().join("store"), &[]);
    let listed: Vec<String> = std::fs::read_dir(m.path("webapp"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(listed, vec![cid.clone()]);
    for not in [format!("app/{cid}"), format!("webapp/{plain}")] {
        let e = std::fs::metadata(m.path(&not)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{not}");
    }
    let site = m.path(&format!("webapp/{cid}"));
    let scratch = root.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    {
        let server = nginx(&site, &scratch.join("nginx"));
        check_site(&server, "nginx", &scratch);
    }
    let server = python_http(&site);
    check_site(&server, "python-http-server", &scratch);
}
