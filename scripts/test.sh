#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, clippy, every unit and end-to-end test.
# Installs what it needs first. Build output goes to a persistent directory outside the clone
# ($CARGO_TARGET_DIR, default ~/.cache/cairn-target) so RocksDB compiles once per machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn-target}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
