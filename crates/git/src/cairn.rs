//! The `cairn` command, as the helper runs it: names resolved and published, blocks read,
//! DAGs fetched and pinned, files added. The helper is to cairn what git's remote helpers are
//! to git, a program driving another's commands, so the daemon's rules (who may publish,
//! what a peer may send) apply to it as to anyone.
//!
//! Every child's standard output is read here and never reaches git (the helper's own
//! standard output is its conversation with git); their standard error is the user's.

use std::{
    ffi::OsStr,
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
};

use anyhow::{bail, Context, Result};
use cid::Cid;

/// The most read from a child's standard output (a block, a JSON answer).
const MAX_OUTPUT: u64 = 4 << 20;

/// Exit status of `cairn profile set --expect-sequence` when the profile moved meanwhile.
pub const MOVED: i32 = 3;
/// Exit status of `cairn name resolve --json` when no valid record was found.
pub const NO_RECORD: i32 = 4;

/// The `cairn` program: `$CAIRN`, else the one beside this helper, else `cairn` on PATH.
pub struct Cairn {
    bin: PathBuf,
}

/// A name's record as resolved.
pub struct Resolved {
    pub value: String,
    pub sequence: u64,
}

/// What a publication of the profile came to.
pub enum Published {
    /// Published: the profile block's CID.
    Done(Cid),
    /// Another publication moved the profile past the sequence expected.
    Moved,
}

impl Cairn {
    pub fn locate() -> Cairn {
        if let Some(b) = std::env::var_os("CAIRN") {
            return Cairn { bin: b.into() };
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.parent()?.join("cairn")))
            .filter(|p| p.is_file());
        Cairn {
            bin: beside.unwrap_or_else(|| "cairn".into()),
        }
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).stdin(Stdio::null()).stderr(Stdio::inherit());
        c
    }

    /// Runs `cairn ARGS`, returning its standard output and how it ended.
    fn output<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<(Vec<u8>, ExitStatus)> {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.bin.display()))?;
        let mut out = Vec::new();
        child
            .stdout
            .as_mut()
            .expect("piped")
            .take(MAX_OUTPUT)
            .read_to_end(&mut out)?;
        // Whatever is left past the bound, so the child is not stuck writing it.
        std::io::copy(child.stdout.as_mut().expect("piped"), &mut std::io::sink())?;
        Ok((out, child.wait()?))
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Vec<u8>> {
        let what = || {
            let a: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
            format!("cairn {}", a.join(" "))
        };
        match self.output(args)? {
            (out, status) if status.success() => Ok(out),
            _ => bail!("{} failed", what()),
        }
    }

    /// Runs `cairn ARGS` with its standard output sent to standard error (progress, which
    /// the user sees and git must not).
    pub fn run_to_stderr<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<()> {
        let status = self
            .command(args)
            .stdout(std::io::stderr())
            .status()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if !status.success() {
            let a: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
            bail!("cairn {} failed", a.join(" "));
        }
        Ok(())
    }

    /// The newest valid record of `name` (a k51 name, an alias or one of the user's keys).
    /// Asks the network (`--nocache`): None if no valid record was found; what `cairn`
    /// said on any other failure is the error.
    pub fn resolve(&self, name: &str) -> Result<Option<Resolved>> {
        let out = self
            .command(&["name", "resolve", "--json", "--nocache", "--", name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| format!("running {}", self.bin.display()))?;
        if out.status.code() == Some(NO_RECORD) {
            return Ok(None);
        }
        if !out.status.success() {
            let said = String::from_utf8_lossy(&out.stderr);
            bail!("{}", said.trim().trim_start_matches("cairn: "));
        }
        let out = out.stdout;
        let v: serde_json::Value =
            serde_json::from_slice(&out).context("reading `cairn name resolve --json`")?;
        Ok(Some(Resolved {
            value: v["value"]
                .as_str()
                .context("a record without value")?
                .into(),
            sequence: v["sequence"]
                .as_u64()
                .context("a record without sequence")?,
        }))
    }

    /// One block, fetched through the daemon if it is not here.
    pub fn block(&self, cid: &Cid) -> Result<Vec<u8>> {
        self.run(&["block", "get", "--", &cid.to_string()])
    }

    /// Fetches `cid`'s whole DAG of about `size` bytes, unpinned (pin what links it first),
    /// failing past `max` bytes. Its window grows with `size` (one block in flight per
    /// 256 KiB, 1 to 32), so a DAG larger than it says overshoots by a few blocks at most.
    pub fn fetch(&self, cid: &Cid, size: u64, max: u64) -> Result<()> {
        let window = (size >> 18).clamp(1, 32);
        self.run_to_stderr(&[
            "fetch",
            "--no-pin",
            "--window",
            &window.to_string(),
            "--max-bytes",
            &max.to_string(),
            "--",
            &cid.to_string(),
        ])
    }

    /// Fetches `cid`'s whole DAG, unpinned, with no bound but the DAG's own (object mode: a
    /// git-raw DAG the user named by its CID).
    pub fn fetch_all(&self, cid: &Cid) -> Result<()> {
        self.run_to_stderr(&["fetch", "--no-pin", "--", &cid.to_string()])
    }

    /// Whether every block of `cid`'s DAG is in the store (read locally, nothing fetched).
    pub fn complete(&self, cid: &Cid) -> bool {
        self.command(&["dag", "export", "-o", "/dev/null", "--", &cid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `cid`'s DAG as a CARv1, streaming out of `cairn dag export`.
    pub fn export_stream(&self, cid: &Cid) -> Result<Child> {
        self.command(&["dag", "export", "--", &cid.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.bin.display()))
    }

    /// A file's bytes as they stream out of the store.
    pub fn cat(&self, cid: &Cid) -> Result<Child> {
        self.command(&["cat", "--", &cid.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.bin.display()))
    }

    /// Adds a file as `ipfs add` does, unpinned; its CID.
    pub fn add(&self, path: &Path) -> Result<Cid> {
        let out = self.run(&[
            OsStr::new("add"),
            OsStr::new("-Q"),
            OsStr::new("--pin=false"),
            OsStr::new("--"),
            path.as_os_str(),
        ])?;
        parse(&out)
    }

    /// Stores a dag-cbor block; its CID.
    pub fn put_dag_cbor(&self, path: &Path) -> Result<Cid> {
        let out = self.run(&[
            OsStr::new("block"),
            OsStr::new("put"),
            OsStr::new("--cid-codec"),
            OsStr::new("dag-cbor"),
            OsStr::new("--"),
            path.as_os_str(),
        ])?;
        parse(&out)
    }

    pub fn pin(&self, cid: &Cid, prog: &str) -> Result<()> {
        self.run(&["pin", "add", "--prog", prog, "--", &cid.to_string()])
            .map(drop)
    }

    /// Removes `prog`'s pin of `cid`, if there is one.
    pub fn unpin(&self, cid: &Cid, prog: &str) {
        let _ = self.output(&["pin", "rm", "--prog", prog, "--", &cid.to_string()]);
    }

    /// Announces `cid` on the DHT (best effort: a node without peers announces nothing).
    pub fn provide(&self, cid: &Cid) {
        let _ = self.output(&["provide", "--", &cid.to_string()]);
    }

    /// The user's key whose name is `name` (k51…) or which is called `name`: its key name.
    pub fn own_key(&self, name: &str) -> Result<Option<String>> {
        let out = self.run(&["key", "list", "--json"])?;
        let v: serde_json::Value = serde_json::from_slice(&out).context("reading key list")?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .find(|k| k["name"] == name || k["ipns"] == name)
            .and_then(|k| k["name"].as_str().map(str::to_owned)))
    }

    /// Publishes the profile of `key` with `repo` pointing at `/ipfs/<doc>`, provided the
    /// profile's record is still at `expect` (None: no record yet).
    pub fn set_repo(
        &self,
        key: &str,
        repo: &str,
        doc: &Cid,
        expect: Option<u64>,
    ) -> Result<Published> {
        let expect = expect.map_or_else(|| "none".to_owned(), |s| s.to_string());
        let args = [
            "profile".to_owned(),
            "set".into(),
            format!("--key={key}"),
            format!("--repo={repo}=/ipfs/{doc}"),
            format!("--expect-sequence={expect}"),
        ];
        let (out, status) = self.output(&args)?;
        match status.code() {
            Some(0) => {
                // "published the profile NAME (CID)"
                let s = String::from_utf8_lossy(&out);
                let cid = s
                    .rsplit_once('(')
                    .and_then(|(_, c)| c.trim().strip_suffix(')'))
                    .and_then(|c| Cid::try_from(c).ok())
                    .with_context(|| format!("cairn profile set printed {s:?}"))?;
                Ok(Published::Done(cid))
            }
            Some(MOVED) => Ok(Published::Moved),
            _ => bail!("publishing the profile {key} failed"),
        }
    }
}

fn parse(out: &[u8]) -> Result<Cid> {
    let s = std::str::from_utf8(out)?.trim();
    Cid::try_from(s).with_context(|| format!("cairn printed {s:?}, not a CID"))
}
