//! `cairn block get|put|stat|rm`.

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{bail, Context, Result};
use cairn_store::{codec, parse_cid, Cid, HashAlg, Store, MAX_BLOCK_SIZE};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BlockCmd {
    /// Write a block's raw bytes to standard output (fetched from peers first, if it is
    /// not here and a daemon runs)
    Get { cid: String },
    /// Store a block read from FILE (or standard input) and print its CID
    Put {
        file: Option<PathBuf>,
        /// Codec of the block: raw, dag-pb, dag-cbor, dag-json, cbor, json, or git-raw (a
        /// loose git object, `<type> <size>\0<body>`, named by its sha1 as git names it)
        #[arg(long, default_value = "raw")]
        cid_codec: String,
        /// Hash function [default: sha2-256; for git-raw, sha1, or sha2-256 for objects of an
        /// object-format=sha256 repository]
        #[arg(long)]
        hash: Option<HashAlg>,
    },
    /// Print a block's CID and size
    Stat { cid: String },
    /// Delete blocks
    Rm {
        #[arg(required = true)]
        cids: Vec<String>,
        /// Do not fail on blocks that are not there
        #[arg(short, long)]
        force: bool,
    },
}

fn codec_code(name: &str) -> Result<u64> {
    use codec::codes::*;
    Ok(match name {
        "raw" => RAW,
        "dag-pb" => DAG_PB,
        "dag-cbor" => DAG_CBOR,
        "dag-json" => DAG_JSON,
        "cbor" => CBOR,
        "json" => JSON,
        "git-raw" => GIT_RAW,
        other => {
            bail!("unknown codec {other:?} (raw, dag-pb, dag-cbor, dag-json, cbor, json, git-raw)")
        }
    })
}

pub fn run(root: &Path, cmd: BlockCmd) -> Result<ExitCode> {
    match cmd {
        BlockCmd::Get { cid } => {
            let store = Store::open(root)?;
            let cid = parse_cid(&cid)?;
            let data = match store.get(&cid)? {
                Some(d) => d,
                None => {
                    let mut c = crate::control::Control::connect(root).with_context(|| {
                        format!("block {cid} is not in the store (and no daemon runs to fetch it)")
                    })?;
                    c.call(&crate::control::Request::Block {
                        cid: cid.to_string(),
                    })
                    .with_context(|| format!("fetching {cid}"))?;
                    store.get(&cid)?.with_context(|| {
                        format!("block {cid} is not in the store after fetching it")
                    })?
                }
            };
            std::io::stdout().lock().write_all(&data)?;
        }
        BlockCmd::Put {
            file,
            cid_codec,
            hash,
        } => {
            let code = codec_code(&cid_codec)?;
            let mut data = Vec::new();
            let limit = MAX_BLOCK_SIZE as u64 + 1;
            match &file {
                Some(p) if p.as_os_str() != "-" => std::fs::File::open(p)
                    .with_context(|| format!("opening {}", p.display()))?
                    .take(limit)
                    .read_to_end(&mut data)?,
                _ => std::io::stdin().lock().take(limit).read_to_end(&mut data)?,
            };
            if data.len() > MAX_BLOCK_SIZE {
                bail!("block is larger than {MAX_BLOCK_SIZE} bytes");
            }
            let mh = match (code, hash) {
                (codec::codes::GIT_RAW, None) => {
                    cairn_store::hash::checked_digest(cairn_store::hash::SHA1, &data)
                        .context("the object carries a sha1 collision attack")?
                }
                (codec::codes::GIT_RAW, Some(HashAlg::Sha2_256)) | (_, None) => {
                    HashAlg::Sha2_256.digest(&data)
                }
                (codec::codes::GIT_RAW, Some(h)) => {
                    bail!("git objects are named by sha1 or sha2-256, not {h}")
                }
                (_, Some(h)) => h.digest(&data),
            };
            let cid = Cid::new_v1(code, mh);
            let store = Store::init(root)?;
            store.put(&cid, &data)?;
            store.flush()?;
            println!("{cid}");
        }
        BlockCmd::Stat { cid } => {
            let store = Store::open(root)?;
            let cid = parse_cid(&cid)?;
            let size = store
                .blocks()
                .size(&cid)?
                .with_context(|| format!("block {cid} is not in the store"))?;
            println!("Key: {cid}");
            println!("Size: {size}");
            println!("Codec: {}", codec::codec_name(cid.codec()));
        }
        BlockCmd::Rm { cids, force } => {
            let store = Store::open(root)?;
            let mut missing = false;
            for s in cids {
                let cid = parse_cid(&s)?;
                if store.remove(&cid)? {
                    println!("removed {cid}");
                } else if !force {
                    eprintln!("cairn: block {cid} is not in the store");
                    missing = true;
                }
            }
            store.flush()?;
            if missing {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
