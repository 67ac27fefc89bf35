//! The daemon's control socket, `R/daemon.sock`: how CLI commands talk to a running daemon.
//!
//! One JSON object per line. A request is `{"op": ..., ...}`; the daemon answers with zero
//! or more `{"progress": ...}` lines and then one `{"ok": ...}` or `{"error": "..."}` line.
//! Any local user may connect (the socket is 0666, like the mount is open to all): reading
//! operations (`id`, `peers`, `stats`, `block`, `prefetch`, `fetch`, `name_resolve`) are for
//! everyone, and so is `name_publish` (a record is its signer's word, checked here);
//! operations that change what the node does (`connect`, `disconnect`, `provide`) are for
//! root and the daemon's own user only, checked with the peer's credentials (SO_PEERCRED).

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the socket is.
pub fn socket(root: &Path) -> PathBuf {
    root.join("daemon.sock")
}

/// A request, as the CLI sends it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Id,
    Peers,
    Stats,
    Connect {
        addr: String,
    },
    Disconnect {
        peer: String,
    },
    Provide {
        cids: Vec<String>,
    },
    /// Make sure this block is in the store (fetching it if needed).
    Block {
        cid: String,
    },
    /// Start fetching these blocks.
    Prefetch {
        cids: Vec<String>,
    },
    /// Fetch the whole DAG under `cid`, `window` blocks at a time, with progress lines.
    Fetch {
        cid: String,
        window: usize,
    },
    /// Keep and publish a signed IPNS record (base64) of `name`. Open to every user: the
    /// signature, checked here, is the authority.
    NamePublish {
        name: String,
        record: String,
        offline: bool,
    },
    /// The newest valid record of `name` the node knows, how fresh, and its release list
    /// if it points to one; or null.
    NameResolve {
        name: String,
        nocache: bool,
        offline: bool,
    },
    /// Keep `name` resolvable from this node (`mirror`: and pin everything it released).
    NameFollow {
        name: String,
        mirror: bool,
    },
    NameUnfollow {
        name: String,
    },
    /// The names this node follows.
    NameFollowed,
    /// Take `name`'s newest list as it is, though it does not extend the last good one.
    NameAccept {
        name: String,
    },
}

impl Request {
    /// True for operations only root and the daemon's user may ask for.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Request::Connect { .. }
                | Request::Disconnect { .. }
                | Request::Provide { .. }
                | Request::NameAccept { .. }
        )
    }
}

/// A connection to the daemon.
pub struct Control {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Control {
    /// Connects to the daemon of `root`; `None` if none is running.
    pub fn connect(root: &Path) -> Option<Control> {
        let stream = UnixStream::connect(socket(root)).ok()?;
        let writer = stream.try_clone().ok()?;
        Some(Control {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Like [`connect`](Self::connect), but an error that says how to start one.
    pub fn require(root: &Path) -> Result<Control> {
        Control::connect(root).with_context(|| {
            format!(
                "no cairn daemon is running for {} (start one with `cairn daemon`)",
                root.display()
            )
        })
    }

    /// Sends `req` and returns the `ok` value; progress lines go to `progress`, whose error
    /// ends the call (and the connection with it: the daemon then stops the work).
    pub fn call_with(
        &mut self,
        req: &Request,
        timeout: Option<Duration>,
        progress: &mut dyn FnMut(&Value) -> Result<()>,
    ) -> Result<Value> {
        let mut line = serde_json::to_string(req)?;
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .context("writing to the daemon")?;
        self.reader.get_ref().set_read_timeout(timeout)?;
        loop {
            let mut reply = String::new();
            if self
                .reader
                .read_line(&mut reply)
                .context("reading from the daemon")?
                == 0
            {
                bail!("the daemon closed the connection");
            }
            let v: Value = serde_json::from_str(&reply).context("a reply from the daemon")?;
            if let Some(p) = v.get("progress") {
                progress(p)?;
            } else if let Some(ok) = v.get("ok") {
                return Ok(ok.clone());
            } else if let Some(e) = v.get("error").and_then(Value::as_str) {
                bail!("{e}");
            } else {
                bail!("the daemon answered {reply:?}");
            }
        }
    }

    pub fn call(&mut self, req: &Request) -> Result<Value> {
        self.call_with(req, None, &mut |_| Ok(()))
    }
}

/// A [`BlockSource`](cairn_store::BlockSource) for CLI commands while a daemon runs: blocks
/// from the store, and missing ones fetched by the daemon into the store, then read there.
pub struct DaemonSource {
    store: std::sync::Arc<cairn_store::Store>,
    control: std::sync::Mutex<Control>,
}

impl DaemonSource {
    pub fn new(store: std::sync::Arc<cairn_store::Store>, control: Control) -> DaemonSource {
        DaemonSource {
            store,
            control: std::sync::Mutex::new(control),
        }
    }

    fn ask(&self, req: &Request) -> Result<Value> {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .call(req)
    }
}

impl cairn_store::BlockSource for DaemonSource {
    fn get(
        &self,
        cid: &cairn_store::Cid,
    ) -> Result<Option<cairn_store::Bytes>, cairn_store::StoreError> {
        if let Some(b) = self.store.get(cid)? {
            return Ok(Some(b));
        }
        // Said here, in full: the daemon would refuse it too, but its reason would be lost.
        cairn_net::bitswap::accept::verifiable(cid)?;
        if let Err(e) = self.ask(&Request::Block {
            cid: cid.to_string(),
        }) {
            log::debug!("daemon: {e:#}");
            return Err(cairn_store::StoreError::Unavailable {
                cid: *cid,
                why: "the daemon could not fetch it",
            });
        }
        match self.store.get(cid)? {
            Some(b) => Ok(Some(b)),
            None => Err(cairn_store::StoreError::Unavailable {
                cid: *cid,
                why: "fetched, then collected before it was read",
            }),
        }
    }

    fn size(&self, cid: &cairn_store::Cid) -> Result<Option<u64>, cairn_store::StoreError> {
        self.store.blocks().size(cid)
    }

    fn indexed(&self, cid: &cairn_store::Cid) -> Option<cairn_store::index::BlockMeta> {
        self.store.indexed(cid)
    }

    fn has(&self, cid: &cairn_store::Cid) -> Result<bool, cairn_store::StoreError> {
        self.store.has(cid)
    }

    fn prefetch(&self, cids: &[cairn_store::Cid]) {
        let missing: Vec<String> = cids
            .iter()
            .filter(|c| !self.store.has(c).unwrap_or(false))
            .map(|c| c.to_string())
            .collect();
        if !missing.is_empty() {
            let _ = self.ask(&Request::Prefetch { cids: missing });
        }
    }
}
