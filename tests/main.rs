//! cairn's end-to-end tests: the real `cairn` binary against real roots in temporary
//! directories. Build the binary first (`cargo build --workspace`); the README's test
//! command does.
//!
//! - `app`: programs built by gcc into a placeholder prefix, run from the app view
//! - `webapp`: the example web app served from the mount by nginx and Python, run in Chromium
//! - `env`: user environments: install, upgrade, roll back, collect, two users
//! - `vectors`: the 65 `ipfs add` CIDs quoted from kubo's own tests
//! - `fixtures`: every CAR of ../shared/fixtures, good and broken
//! - `cli`: the commands as users type them: output, errors, get/cat/ls/refs/block
//! - `store`: corruption, verify and repair, index journals
//! - `crash`: `kill -9` in the middle of an add
//! - `concurrency`: several processes adding into one root at once
//! - `mount`: the FUSE mount, mounted for real, read with ordinary tools
//! - `gc`: pins and garbage collection, one test per liveness rule, and a stress test
//! - `hostile`: DAGs built to explode walks, broken journals and CARs, a stale ready pipe, no /proc
//! - `network`: cairn daemons, Helia and kubo on loopback moving real blocks (`peers`: the processes)
//! - `hostile_peer`: a libp2p peer of the test's own sending a daemon bad blocks, garbage and floods
//!   (and a defector, which serves well and then does not)
//! - `incentives`: contended daemons serving contributors before free-riders; whitewashers;
//!   colluders' statements

mod app;
mod cli;
mod concurrency;
mod crash;
mod env;
mod fixtures;
mod gc;
mod hostile;
mod hostile_peer;
mod incentives;
mod mount;
mod network;
mod peers;
mod store;
mod util;
mod vectors;
mod webapp;
