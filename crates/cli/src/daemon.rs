//! `cairn daemon`: the network node and the mount in one process, and the control socket the
//! other commands talk to it through.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use cairn_net::{config::Provide, node, Client, Config, NetworkSource};
use cairn_store::Store;
use clap::Args;
use tokio::net::UnixListener;

use crate::{
    control,
    mount::{self, MountSettings},
    socket,
};

#[derive(Args)]
pub struct DaemonArgs {
    /// Where to mount the store [default: ROOT/store]
    mountpoint: Option<PathBuf>,
    /// Run the node without mounting the store
    #[arg(long)]
    no_mount: bool,
    /// Detach and run in the background once ready (logs go to ROOT/daemon.log)
    #[arg(long)]
    detach: bool,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    settings: MountSettings,
}

/// Settings that override ROOT/config.toml, for `daemon` and for `fetch` without a daemon.
#[derive(Args, Clone, Default)]
pub struct NetArgs {
    /// Listen on this multiaddr instead of config's `listen` (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Also connect to this peer at start: a multiaddr ending in /p2p/PEER (repeatable)
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Do not look for peers on the local network (mDNS)
    #[arg(long)]
    no_mdns: bool,
    /// Do not join the DHT
    #[arg(long)]
    no_dht: bool,
    /// Seconds a read waits for a missing block before it fails (EIO)
    #[arg(long, value_name = "SECS")]
    fetch_timeout: Option<f64>,
    /// Upload limit for serving blocks, bytes per second (suffixes K, M, G; 0 = none).
    /// Under it, peers that gave us most are served first; strangers share a small part
    #[arg(long, value_name = "RATE")]
    upload_limit: Option<String>,
    /// Serve no blocks to anyone (peers will serve us last when they are busy)
    #[arg(long)]
    no_serve: bool,
    /// Treat every peer alike: no serving by generosity, no asking the best deliverers
    /// first (for comparison)
    #[arg(long)]
    no_incentives: bool,
}

impl NetArgs {
    /// True if any setting was given on the command line.
    pub fn is_set(&self) -> bool {
        !self.listen.is_empty()
            || !self.bootstrap.is_empty()
            || self.no_mdns
            || self.no_dht
            || self.fetch_timeout.is_some()
            || self.upload_limit.is_some()
            || self.no_serve
            || self.no_incentives
    }

    /// ROOT/config.toml with these overrides.
    pub fn config(&self, root: &Path) -> Result<Config> {
        let mut c = Config::load(&root.join("config.toml"))?;
        if !self.listen.is_empty() {
            c.listen = parse_addrs(&self.listen)?;
        }
        c.bootstrap.extend(parse_addrs(&self.bootstrap)?);
        c.mdns &= !self.no_mdns;
        c.dht &= !self.no_dht;
        c.serve &= !self.no_serve;
        c.incentives &= !self.no_incentives;
        if let Some(t) = self.fetch_timeout {
            if !(t > 0.0 && t <= 86400.0) {
                bail!("--fetch-timeout {t}: not in (0, 86400] seconds");
            }
            c.fetch_timeout = Duration::from_secs_f64(t);
        }
        if let Some(r) = &self.upload_limit {
            c.upload_limit = cairn_net::config::parse_rate(r).map_err(anyhow::Error::msg)?;
        }
        Ok(c)
    }
}

fn parse_addrs(v: &[String]) -> Result<Vec<cairn_net::Multiaddr>> {
    v.iter()
        .map(|s| {
            s.parse()
                .with_context(|| format!("{s:?} is not a multiaddr"))
        })
        .collect()
}

/// A tokio runtime for the node: two workers (blocks are hashed on the blocking pool).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cairn-net")
        .enable_all()
        .build()?)
}

pub fn run(root: &Path, args: DaemonArgs) -> Result<ExitCode> {
    let ready = mount::ready_pipe();
    let store = Arc::new(Store::init(root)?);
    let layout = store.layout().clone();
    let mountpoint = args.mountpoint.clone().unwrap_or_else(|| layout.store());
    if args.detach {
        return mount::daemonize(root, &mountpoint, "--detach", "daemon.log");
    }
    // Before any thread (RocksDB starts its own when the index is opened): every thread
    // started later inherits the blocked signals, and one thread waits for them. A thread
    // that had them unblocked would take a SIGTERM's default action, killing the process
    // with its mount left behind.
    let signals = mount::block_signals();
    let fds = mount::raise_fd_limit();
    log::debug!("open files: up to {fds}");
    store.open_reader();
    let config = args.net.config(root)?;
    let key = cairn_net::identity::load_or_create(&root.join("node.key"))
        .with_context(|| format!("the node key in {}", root.display()))?;
    let rt = runtime()?;
    let sock = control::socket(root);
    if control::Control::connect(root).is_some() {
        bail!("a cairn daemon is already running for {}", root.display());
    }
    let _ = std::fs::remove_file(&sock);
    let client = rt.block_on(node::start(&config, key, store.clone()))?;
    let listener = {
        let _guard = rt.enter();
        UnixListener::bind(&sock).with_context(|| format!("binding {}", sock.display()))?
    };
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666))?;
    }
    let addrs = rt.block_on(client.listen_addrs())?;
    eprintln!("cairn: node {} listening on", client.peer_id());
    for a in &addrs {
        eprintln!("  {a}");
    }
    let naming = crate::naming::Naming::open(
        root,
        Some(client.clone()),
        store.clone(),
        config.fetch_timeout,
        config.names.clone(),
        Some(rt.handle().clone()),
    )
    .with_context(|| format!("{}/names", root.display()))?;
    let ctx = Arc::new(socket::Ctx {
        client: client.clone(),
        store: store.clone(),
        timeout: config.fetch_timeout,
        // SAFETY: geteuid has no preconditions.
        owner: unsafe { libc::geteuid() },
        naming: naming.clone(),
    });
    rt.spawn(socket::serve(listener, ctx));
    rt.spawn(provide(client.clone(), layout.clone(), config.provide));
    rt.spawn(flush(store.clone()));
    rt.spawn(naming.clone().run());
    let result = if args.no_mount {
        eprintln!("cairn: daemon ready (not mounted)");
        if let Some(mut f) = ready {
            use std::io::Write;
            let _ = f.write_all(b"ready\n");
        }
        let sig = mount::wait_signal(&signals);
        log::info!("signal {sig}: stopping");
        Ok(())
    } else {
        // Keep FUSE threads of every pool free of network waits, for listings and local files.
        let (dev_fuse, queue) =
            cairn_fuse::mount::network_waiters(&args.settings.options(&layout, &mountpoint));
        let src = Arc::new(
            NetworkSource::new(
                store.clone(),
                client.clone(),
                config.fetch_timeout,
                dev_fuse,
            )
            .with_queue_limit(queue)
            .with_skeletons(rt.handle().clone(), config.skeleton_limits()),
        );
        mount::serve(
            root,
            src,
            &mountpoint,
            &args.settings,
            mount::names(naming),
            signals,
            ready,
        )
    };
    let _ = std::fs::remove_file(&sock);
    // What peers did is kept for the next start (the runtime's tasks are dropped, not
    // finished, when it shuts down).
    let saved = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), client.save_ledger()).await
    });
    if !matches!(saved, Ok(Ok(()))) {
        log::warn!("the ledger was not saved at stop");
    }
    drop(client);
    rt.shutdown_timeout(Duration::from_secs(2));
    store.flush()?;
    result.map(|()| ExitCode::SUCCESS)
}

/// Writes the index journal and syncs every few seconds while blocks arrive (one `syncfs`
/// per batch, not per block), and lets go of the temp pins of finished cache writes.
async fn flush(store: Arc<Store>) {
    let mut last = store.written();
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = store.written();
        let s = store.clone();
        let changed = now != last;
        last = now;
        let _ = tokio::task::spawn_blocking(move || {
            s.release_cache_pins();
            if changed {
                if let Err(e) = s.flush() {
                    log::warn!("flushing the store: {e}");
                }
            }
        })
        .await;
    }
}

/// Announces the pinned roots (or every block) on the DHT: once a peer is connected (an
/// announcement with nobody to tell goes nowhere), then whatever is new every 30 s, and
/// everything again whenever the number of peers grows or every 10 minutes.
async fn provide(client: Client, layout: cairn_store::Layout, what: Provide) {
    if what == Provide::None {
        return;
    }
    let mut announced = std::collections::HashSet::new();
    let mut peers_before = 0;
    let mut everything_at = std::time::Instant::now();
    loop {
        let peers = client.peers().await.map(|p| p.len()).unwrap_or(0);
        if peers == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        if peers > peers_before || everything_at.elapsed() > Duration::from_secs(600) {
            announced.clear();
            everything_at = std::time::Instant::now();
        }
        peers_before = peers;
        let l = layout.clone();
        let cids = tokio::task::spawn_blocking(move || -> Vec<cairn_store::Cid> {
            match what {
                Provide::None => Vec::new(),
                Provide::Roots => cairn_gc::pins::list(&l)
                    .map(|(pins, _)| pins.into_iter().map(|p| p.cid).collect())
                    .unwrap_or_default(),
                Provide::All => cairn_store::FileBlocks::new(&l)
                    .iter()
                    .map(|it| it.flatten().collect())
                    .unwrap_or_default(),
            }
        })
        .await
        .unwrap_or_default();
        let fresh: Vec<_> = cids
            .into_iter()
            .filter(|c| announced.insert(cairn_store::canonical(c)))
            .collect();
        if !fresh.is_empty() {
            match client.provide(&fresh).await {
                Ok(n) => log::info!("announcing {n} blocks on the DHT"),
                Err(_) => return,
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
