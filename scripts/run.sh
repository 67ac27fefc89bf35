#!/usr/bin/env bash
# Builds cairn (release) and runs its main job on the default root: initialise the root,
# add a directory tree, and show it. Usage: scripts/run.sh [DIR-TO-ADD]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
. scripts/env.sh
cargo build --release -p cairn
cairn="$CARGO_TARGET_DIR/release/cairn"
"$cairn" init
dir="${1:-/usr/share/doc/bash}"
cid=$("$cairn" add -r -Q "$dir")
echo "added $dir as $cid"
"$cairn" ls "$cid"
"$cairn" stat
