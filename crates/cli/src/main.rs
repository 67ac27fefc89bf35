//! `cairn`: the command-line face of cairn's block store.
//!
//! Every command works on one root (`--root`, `CAIRN_ROOT`, or the default: `/ipfs` for root,
//! else `$XDG_DATA_HOME/cairn`). Errors are one line on stderr and a non-zero exit.

mod add;
mod app;
mod block;
mod control;
mod daemon;
mod dag;
mod environment;
mod key;
mod maint;
mod mount;
mod name;
mod naming;
mod pin;
mod profile;
mod progress;
mod read;
mod release;
mod socket;
mod swarm;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// A content-addressed block store that Linux sees as an ordinary read-only filesystem.
///
/// cairn stores IPFS blocks as files under ROOT/blocks, indexes their links in RocksDB, and
/// gives the same CIDs as kubo's `ipfs add`.
#[derive(Parser)]
#[command(name = "cairn", version, max_term_width = 100)]
struct Cli {
    /// The cairn root [default: /ipfs for root, else $XDG_DATA_HOME/cairn]
    #[arg(long, global = true, env = "CAIRN_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the root's directories (safe to run again)
    Init,
    /// Add files or directory trees, printing a CID per entry like `ipfs add`
    Add(add::AddArgs),
    /// Print a file's bytes: CID or CID/path/inside
    Cat {
        /// CID[/path]
        path: String,
    },
    /// Write a file, directory or symlink out of the store, with mode and mtime when recorded
    Get {
        /// CID[/path]
        path: String,
        /// Where to write it (must not exist) [default: the CID or last path component]
        #[arg(short, long, value_name = "DEST")]
        output: Option<PathBuf>,
    },
    /// List a directory's entries: CID, size of the whole entry, name
    Ls {
        /// CID[/path]
        path: String,
        /// One JSON object per entry
        #[arg(long)]
        json: bool,
    },
    /// Apps: the placeholder to build with, and what an app node records
    #[command(subcommand)]
    App(app::AppCmd),
    /// Raw blocks
    #[command(subcommand)]
    Block(block::BlockCmd),
    /// List the CIDs a block links to
    Refs {
        /// CID[/path]
        path: String,
        /// Every block reachable from it, each once
        #[arg(short, long)]
        recursive: bool,
    },
    /// CAR archives: import and export whole DAGs
    #[command(subcommand)]
    Dag(dag::DagCmd),
    /// Re-hash every block; move corrupt ones to ROOT/blocks/.corrupt
    Verify {
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the index from the block files alone
    Repair {
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Pins: keep DAGs through garbage collection
    #[command(subcommand)]
    Pin(pin::PinCmd),
    /// Delete every block no pin, auto pin, live writer or profile reaches
    Gc {
        /// Report what would be freed; delete nothing
        #[arg(long)]
        dry_run: bool,
        /// Stop after freeing this many bytes
        #[arg(long, value_name = "BYTES")]
        max_freed: Option<u64>,
        /// How long each batch of deletions holds ROOT/pins/lock (adds wait for it): after
        /// gathering the roots again, a batch deletes at least 64 blocks and goes on until this
        /// many milliseconds have passed since it took the lock
        #[arg(long, value_name = "MS", default_value_t = 20)]
        batch_ms: u64,
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Mount the store read-only at ROOT/store (or MOUNTPOINT): ROOT/store/{cid}/path,
    /// ROOT/store/{view}/{cid}/path with views unixfs, raw, app (programs added with
    /// `add --app`, run in place) and webapp (sites added with `add --webapp`). Setuid bits
    /// and device nodes have no effect (nosuid, nodev). Stops cleanly on SIGINT/SIGTERM.
    /// Local blocks only: `cairn daemon` mounts with the network behind it.
    Mount(mount::MountArgs),
    /// Blocks and bytes in the store (and, with a daemon running, network counters)
    Stat {
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Run the network node and the mount: fetch missing blocks while programs read them,
    /// serve what is here. Reads ROOT/config.toml; other commands talk to it over
    /// ROOT/daemon.sock. Stops cleanly on SIGINT/SIGTERM.
    Daemon(daemon::DaemonArgs),
    /// Your environment: install apps onto your PATH in generations, switch, roll back.
    /// Without a command, prints the line that puts ~/.cairn-profile/bin on PATH
    Env(environment::EnvArgs),
    /// Your signing keys (under ~/.config/cairn/keys, never in a root): a key is an IPNS
    /// name only its holder can publish under
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// IPNS names: publish a signed pointer under your key's name, resolve anyone's (through
    /// the running daemon and the DHT; kubo and Helia resolve the same names)
    #[command(subcommand)]
    Name(name::NameCmd),
    /// Your profile, published under your key `profile`: a display name, your packages and
    /// your repositories; show anyone's by their profile's name
    #[command(subcommand)]
    Profile(profile::ProfileCmd),
    /// Release a version of a package under your key (only that key can), or yank one: the
    /// package's name then resolves to a list of its versions (`cairn versions`,
    /// `cairn name resolve NAME@VERSION`). Needs a running daemon
    Release(release::ReleaseArgs),
    /// The versions a package's name lists: version, CID, when, which is latest, yanked
    Versions {
        /// A name (k51…) or one of your keys
        name: String,
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
        /// Ask the network even if this node holds a record
        #[arg(long)]
        nocache: bool,
    },
    /// The network: this node, its peers, connecting and disconnecting
    #[command(subcommand)]
    Swarm(swarm::SwarmCmd),
    /// Fetch a whole DAG from peers, pinning it first (resumable: run it again to continue)
    Fetch {
        /// A CID, or a released version: NAME@VERSION (NAME@latest), which needs a daemon
        cid: String,
        /// Do not pin the DAG (fetched blocks are then cache that gc may collect)
        #[arg(long)]
        no_pin: bool,
        /// The program the pin belongs to
        #[arg(long, default_value = "fetch")]
        prog: String,
        /// Blocks wanted at once (1 to 1024: a peer holds at most 1024 of our wants). Small
        /// enough that a swarm of fetchers asks the seeder for different blocks and trades the
        /// rest among itself
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
        window: u64,
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
        /// Stop (and fail) once more than this many bytes were fetched: for DAGs whose size
        /// is known beforehand, from someone who might lie (suffixes K, M, G)
        #[arg(long, value_name = "BYTES", value_parser = byte_count)]
        max_bytes: Option<u64>,
        /// Network settings when no daemon runs (a node is started for the fetch)
        #[command(flatten)]
        net: daemon::NetArgs,
    },
    /// Announce on the DHT that this node provides these CIDs (needs a running daemon)
    Provide {
        #[arg(required = true)]
        cids: Vec<String>,
    },
}

/// A number of bytes, with K, M or G (not 0).
fn byte_count(s: &str) -> Result<u64, String> {
    cairn_net::config::parse_rate(s)?.ok_or_else(|| "0 bytes allows nothing".to_owned())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let root = cli
        .root
        .clone()
        .unwrap_or_else(cairn_store::Layout::default_root);
    let result = match cli.command {
        Command::Init => maint::init(&root),
        Command::Add(args) => add::run(&root, args),
        Command::Cat { path } => read::cat(&root, &path),
        Command::Get { path, output } => read::get(&root, &path, output),
        Command::Ls { path, json } => read::ls(&root, &path, json),
        Command::App(cmd) => app::run(&root, cmd),
        Command::Block(cmd) => block::run(&root, cmd),
        Command::Refs { path, recursive } => read::refs(&root, &path, recursive),
        Command::Dag(cmd) => dag::run(&root, cmd),
        Command::Verify { json } => maint::verify(&root, json),
        Command::Repair { json } => maint::repair(&root, json),
        Command::Stat { json } => maint::stat(&root, json),
        Command::Mount(args) => mount::run(&root, args),
        Command::Pin(cmd) => pin::run(&root, cmd),
        Command::Daemon(args) => daemon::run(&root, args),
        Command::Env(args) => environment::run(&root, args),
        Command::Key(cmd) => key::run(cmd),
        Command::Name(cmd) => name::run(&root, cmd),
        Command::Profile(cmd) => profile::run(&root, cmd),
        Command::Release(args) => release::release(&root, args),
        Command::Versions {
            name,
            json,
            nocache,
        } => release::versions(&root, &name, json, nocache),
        Command::Swarm(cmd) => swarm::swarm(&root, cmd),
        Command::Fetch {
            cid,
            no_pin,
            prog,
            window,
            json,
            max_bytes,
            net,
        } => release::cid_arg(&root, &cid).and_then(|cid| {
            let how = swarm::FetchArgs {
                pin: !no_pin,
                prog: &prog,
                window: window as usize,
                json,
                max_bytes,
            };
            swarm::fetch(&root, &cid, &how, &net)
        }),
        Command::Provide { cids } => swarm::provide(&root, &cids),
        Command::Gc {
            dry_run,
            max_freed,
            batch_ms,
            json,
        } => pin::gc(
            &root,
            cairn_gc::GcOptions {
                dry_run,
                max_freed,
                batch: std::time::Duration::from_millis(batch_ms),
                ..cairn_gc::GcOptions::default()
            },
            json,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // A closed stdout (`cairn cat … | head`) is not an error worth a message.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::from(141);
            }
            eprintln!("cairn: {e:#}");
            ExitCode::FAILURE
        }
    }
}
