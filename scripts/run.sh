#!/usr/bin/env bash
# Builds cairn (release) and runs its main job on the default root (/ipfs as root, else
# $XDG_DATA_HOME/cairn): add some content, then run the daemon in the foreground: the network
# node (serving what is here, fetching what is read and missing) and the store mounted at
# ROOT/store. Ctrl-C stops it and unmounts. Usage: scripts/run.sh [DIR-TO-ADD]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
. scripts/env.sh
cargo build --release -p cairn -p cairn-git
cairn="$CARGO_TARGET_DIR/release/cairn"
# FUSE over io_uring (Linux 6.14+): the mount then answers each request on the caller's CPU.
if [ "$(id -u)" = 0 ] && [ -e /sys/module/fuse/parameters/enable_uring ]; then
    echo 1 > /sys/module/fuse/parameters/enable_uring
fi
"$cairn" init
dir="${1:-/usr/share/doc}"
cid=$("$cairn" add -r -Q --preserve-mode --preserve-mtime "$dir")
store=$("$cairn" stat --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])')/store
echo "added $dir as $cid (pinned)"
echo "starting the daemon and mounting $store: try  ls $store/$cid  (Ctrl-C to stop)"
exec "$cairn" daemon
