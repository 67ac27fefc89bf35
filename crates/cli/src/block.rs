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
    /// Write a block's raw bytes to standard output
    Get { cid: String },
    /// Store a block read from FILE (or standard input) and print its CID
    Put {
        file: Option<PathBuf>,
        /// Codec of the block: raw, dag-pb, dag-cbor, dag-json, ...
        #[arg(long, default_value = "raw")]
        cid_codec: String,
        #[arg(long, default_value = "sha2-256")]
        hash: HashAlg,
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
        other => bail!("unknown codec {other:?} (raw, dag-pb, dag-cbor, dag-json, cbor, json)"),
    })
}

pub fn run(root: &Path, cmd: BlockCmd) -> Result<ExitCode> {
    match cmd {
        BlockCmd::Get { cid } => {
            let store = Store::open(root)?;
            let cid = parse_cid(&cid)?;
            let data = store
                .get(&cid)?
                .with_context(|| format!("block {cid} is not in the store"))?;
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
            let cid = Cid::new_v1(code, hash.digest(&data));
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
