//! `cairn app`: the placeholder a build uses for its own install path, and what an app node
//! records. `cairn add --app` (in `add.rs`) makes apps.

use std::{path::Path, process::ExitCode};

use anyhow::{bail, Context, Result};
use cairn_app::{AppKind, AppNode, PLACEHOLDER};
use cairn_store::Store;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum AppCmd {
    /// Print the placeholder to build an app with: it stands for the app's CID, which is
    /// not known until the app is added.
    ///
    /// Build with `--prefix ROOT/store/app/PLACEHOLDER` (what `--prefix` prints; it assumes
    /// the mount at ROOT/store), install into a staging directory (`make install
    /// DESTDIR=...`: the prefix itself is on the read-only mount), add that with `cairn add
    /// --app DIR`, and run it from ROOT/store/app/CID/: every
    /// occurrence of the placeholder in its files and symlink targets reads as the CID.
    Placeholder {
        /// Print the whole install prefix, ROOT/store/app/PLACEHOLDER
        #[arg(long)]
        prefix: bool,
    },
    /// Show what an app node records: its content, name, and the self-references per file
    Show {
        cid: String,
        /// Print JSON instead of text, for scripts
        #[arg(long)]
        json: bool,
    },
}

pub fn run(root: &Path, cmd: AppCmd) -> Result<ExitCode> {
    match cmd {
        AppCmd::Placeholder { prefix } => {
            if prefix {
                // Built into programs: it must be absolute.
                let root = std::path::absolute(root)
                    .with_context(|| format!("making {} absolute", root.display()))?;
                println!("{}/store/app/{PLACEHOLDER}", root.display());
            } else {
                println!("{PLACEHOLDER}");
            }
        }
        AppCmd::Show { cid, json } => {
            let cid: cairn_store::Cid = cid
                .parse()
                .with_context(|| format!("{cid:?} is not a CID"))?;
            let store = Store::open(root)?;
            let Some(bytes) = store.get(&cid)? else {
                bail!("block {cid} is not in the store (cairn fetch {cid})");
            };
            let node = AppNode::decode(&bytes).with_context(|| format!("{cid}"))?;
            let kind = match node.kind {
                AppKind::App => "app",
                AppKind::Webapp => "webapp",
            };
            let total: usize = node.refs.values().map(Vec::len).sum();
            if json {
                let v = serde_json::json!({
                    "cid": cairn_store::block_name(&cid),
                    "type": kind,
                    "name": node.name,
                    "content": node.content.to_string(),
                    "refs": node.refs,
                });
                println!("{v}");
            } else {
                println!("{kind} {}", cairn_store::block_name(&cid));
                if let Some(n) = &node.name {
                    println!("name     {n}");
                }
                println!("content  {}", node.content);
                println!(
                    "refs     {total} self-references in {} files",
                    node.refs.len()
                );
                for (path, offsets) in &node.refs {
                    println!("  {path}: {}", offsets.len());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
