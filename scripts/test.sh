#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, clippy, every unit and end-to-end test.
# Installs what it needs first. Build output goes to a persistent directory outside the clone
# ($CARGO_TARGET_DIR, default ~/.cache/cairn-target) so RocksDB compiles once per machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/interop.sh
. scripts/env.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# A hung test must not hang CI: the whole suite gets 40 minutes.
timeout --kill-after=30 2400 cargo test --workspace --no-fail-fast
