#!/usr/bin/env bash
# Builds cairn (release) and runs its main job on the default root (/ipfs as root, else
# $XDG_DATA_HOME/cairn): add some content, then mount the store at ROOT/store in the
# foreground. Ctrl-C unmounts. Usage: scripts/run.sh [DIR-TO-ADD]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
. scripts/env.sh
cargo build --release -p cairn
cairn="$CARGO_TARGET_DIR/release/cairn"
"$cairn" init
dir="${1:-/usr/share/doc}"
cid=$("$cairn" add -r -Q --preserve-mode --preserve-mtime "$dir")
store=$("$cairn" stat --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["root"])')/store
echo "added $dir as $cid (pinned)"
echo "mounting $store: try  ls $store/$cid  (Ctrl-C to unmount)"
exec "$cairn" mount
