//! cairn's end-to-end tests: the real `cairn` binary against real roots in temporary
//! directories. Build the binary first (`cargo build --workspace`); the README's test
//! command does.
//!
//! - `app`: programs built by gcc into a placeholder prefix, run from the app view
//! - `webapp`: the example web app served from the mount by nginx and Python, run in Chromium
//! - `dht_attack`: a DHT answer naming 50,000 providers; LAN records asked for on the public DHT
//! - `env`: user environments: install, upgrade, roll back, collect, two users
//! - `vectors`: the 65 `ipfs add` CIDs quoted from kubo's own tests
//! - `faults`: a seeder killed or restarted mid-fetch, a fetch killed and run again
//! - `fixtures`: every CAR of ../shared/fixtures, good and broken
//! - `cli`: the commands as users type them: output, errors, get/cat/ls/refs/block
//! - `store`: corruption, verify and repair, index journals
//! - `crash`: `kill -9` in the middle of an add
//! - `stop`: an unprivileged daemon or mount stopped by SIGTERM, SIGINT, `kill -9`: no mount left
//! - `concurrency`: several processes adding into one root at once
//! - `control_socket`: a local user (nobody) throwing long lines, idle connections and absurd
//!   requests at a daemon's socket
//! - `firstrun`: an empty node entering a tree through its mount: the skeleton first, listings
//!   and `stat` without the network, limits on a skeleton and a hostile tree
//! - `names`: keys as users type them, and what another user cannot do with them; names and
//!   release lists between daemons, through kubo's DHT, with Helia
//! - `names_mount`: `R/store/name/` while releases land, aliases, a follower keeping a name
//!   after its owner left, until its validity ends
//! - `mount`: the FUSE mount, mounted for real, read with ordinary tools
//! - `gc`: pins and garbage collection, one test per liveness rule, and a stress test
//! - `git`: a real repository's objects as git-raw blocks named by git's ids, walked whole,
//!   and pinned by kubo from a cairn daemon
//! - `git_remote`: `git push` and `git clone` of `cairn://` URLs between daemons (git-remote-cairn),
//!   and documents and bundles built to deceive it
//! - `hostile`: DAGs built to explode walks, broken journals and CARs, a stale ready pipe, no /proc
//! - `network`: cairn daemons, Helia and kubo on loopback moving real blocks (`peers`: the processes)
//! - `hostile_js`: hostile and honest peers in JavaScript on Helia's libp2p stack
//! - `hostile_peer`: a libp2p peer of the test's own (`raw_peer`) sending a daemon bad blocks,
//!   garbage and floods (and a defector, which serves well and then does not)
//! - `wantlists`: what a peer holds of our wants: every ended want cancelled, a reconnect resent
//! - `incentives`: contended daemons serving contributors before free-riders; whitewashers;
//!   colluders' statements

mod app;
mod cli;
mod concurrency;
mod control_socket;
mod crash;
mod dht_attack;
mod env;
mod faults;
mod firstrun;
mod fixtures;
mod gc;
mod git;
mod git_remote;
mod hostile;
mod hostile_js;
mod hostile_peer;
mod incentives;
mod mount;
mod names;
mod names_mount;
mod network;
mod peers;
mod raw_peer;
mod stop;
mod store;
mod util;
mod vectors;
mod wantlists;
mod webapp;
