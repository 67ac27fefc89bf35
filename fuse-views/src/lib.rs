//! cairn's read-only FUSE filesystem: `R/store/{view}/{cid}/{path}` and `R/store/{cid}/{path}`.
//!
//! One adapter ([`fs::CairnFs`]) speaks FUSE; [`view`]s decide what a CID looks like (`raw`:
//! a block as a file; `unixfs`: UnixFS files, directories, HAMT shards and symlinks; `app` and
//! `webapp`: an app node's tree with its own CID written over its placeholder). Listings,
//! lookups and `stat` are answered from the index's attributes where it has them. Content
//! never changes, so the kernel is told to keep entries, attributes and pages for a year, opens
//! are stateless where the kernel allows (or, with passthrough, single-block raw files are read
//! by the kernel from their block files), and decoded nodes are cached so that a read does not
//! re-walk the DAG and each block is verified once.
//!
//! Transport: requests come through fuser's `/dev/fuse` threads, or, when cairn mounts as
//! root on a kernel that allows it, through per-CPU io_uring queues ([`uring`]) whose threads
//! answer each request on its caller's CPU. Both hand the same operations (`fs::ops`) to the
//! views; a walk through either sees the same tree.
//!
//! Errors: a corrupt or missing block is `EIO` and a log line naming the CID, never wrong
//! bytes; a name that is not there, or a top-level name that is not a CID we have, is `ENOENT`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use cairn_fuse::mount::{mount, MountOptions};
//!
//! let store = Arc::new(cairn_store::Store::open("/ipfs")?);
//! let blocks = store.layout().blocks();
//! let mounted = mount(store, blocks, &MountOptions::new("/ipfs/store"))?;
//! mounted.run()?; // until unmounted
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cache;
pub mod fs;
mod inodes;
pub mod mount;
pub mod uring;
pub mod view;
