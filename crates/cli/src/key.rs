//! `cairn key`: the user's signing keys, kept under `~/.config/cairn/keys/`, never in a root.

use std::{
    io::{IsTerminal, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
    process::ExitCode,
};

use anyhow::{Context, Result};
use cairn_names::keys::{Keystore, MAX_KEY_FILE};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum KeyCmd {
    /// Make a new Ed25519 key and print the IPNS name it signs for (k51…)
    Gen {
        /// What to call the key (letters, digits, '.', '_', '-')
        name: String,
    },
    /// List your keys: name, then the IPNS name each signs for
    List {
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
    /// Write a key in libp2p's protobuf encoding (the format of kubo's `ipfs key export`):
    /// whoever holds the file can publish as the name, so keep it as safe as the key
    Export {
        name: String,
        /// The file to write (made with mode 0600; never overwritten) [default: standard
        /// output, unless it is a terminal]
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Import a key: a file from `cairn key export` or kubo's `ipfs key export`, a node's
    /// R/node.key, the base64 of one, or a kubo config (its Identity.PrivKey). Ed25519 and
    /// RSA keys only
    Import {
        name: String,
        /// The file, or - for standard input
        file: PathBuf,
    },
    /// Delete a key. Without an export of it, nobody can publish under its name again
    Rm { name: String },
}

pub fn run(cmd: KeyCmd) -> Result<ExitCode> {
    let ks = Keystore::open_default()?;
    match cmd {
        KeyCmd::Gen { name } => {
            let key = ks.generate(&name)?;
            println!("{}", key.ipns());
            eprintln!(
                "cairn: key {name} is in {}; export it (cairn key export {name} -o FILE) to keep a copy",
                ks.dir().display()
            );
        }
        KeyCmd::List { json } => {
            let mut bad = 0;
            let mut rows = Vec::new();
            for (name, key) in ks.list()? {
                match key {
                    Ok(k) => rows.push((name, k.ipns().to_string(), k.keypair.key_type())),
                    Err(e) => {
                        eprintln!("cairn: {name}: {e}");
                        bad += 1;
                    }
                }
            }
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(n, ipns, t)| {
                        serde_json::json!({"name": n, "ipns": ipns, "type": format!("{t:?}")})
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (n, ipns, _) in &rows {
                    println!("{n} {ipns}");
                }
            }
            if bad > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        KeyCmd::Export { name, output } => {
            let key = ks.get(&name)?;
            match output {
                Some(path) => {
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&path)
                        .with_context(|| {
                            format!("{} (an export never overwrites)", path.display())
                        })?;
                    f.write_all(&key.encoded)?;
                    f.sync_all()?;
                    eprintln!(
                        "cairn: key {name} ({}) written to {}",
                        key.ipns(),
                        path.display()
                    );
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    if out.is_terminal() {
                        anyhow::bail!("a key is binary: give -o FILE, or redirect standard output");
                    }
                    out.write_all(&key.encoded)?;
                    out.flush()?;
                }
            }
        }
        KeyCmd::Import { name, file } => {
            let mut bytes = Vec::new();
            let limit = MAX_KEY_FILE + 1;
            if file.as_os_str() == "-" {
                std::io::stdin()
                    .lock()
                    .take(limit)
                    .read_to_end(&mut bytes)?;
            } else {
                std::fs::File::open(&file)
                    .with_context(|| file.display().to_string())?
                    .take(limit)
                    .read_to_end(&mut bytes)
                    .with_context(|| file.display().to_string())?;
            }
            let key = ks.import(&name, &bytes)?;
            println!("{}", key.ipns());
            eprintln!(
                "cairn: imported {name} ({:?}) into {}",
                key.keypair.key_type(),
                ks.dir().display()
            );
        }
        KeyCmd::Rm { name } => {
            let ipns = ks.get(&name).map(|k| k.ipns().to_string());
            ks.remove(&name)?;
            match ipns {
                Ok(ipns) => eprintln!(
                    "cairn: key {name} deleted; only an export of it can publish {ipns} again"
                ),
                Err(_) => eprintln!("cairn: key {name} deleted"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
