#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, clippy, every unit and end-to-end test.
# Installs what it needs first. Build output goes to a persistent directory outside the clone
# ($CARGO_TARGET_DIR, default ~/.cache/cairn-target) so RocksDB compiles once per machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/interop.sh
. scripts/env.sh
# Cargo never removes artifacts that a change of dependencies or features made stale, so the
# persistent target directory only grows (tens of GB over weeks). When the disk under it has
# less than 20 GB free, start it afresh: ccache still holds RocksDB's C++, so that costs a
# few minutes, not a failed run with ENOSPC.
mkdir -p "$CARGO_TARGET_DIR"
free_kb=$(df -Pk "$CARGO_TARGET_DIR" | awk 'NR == 2 { print $4 }')
if [ "$free_kb" -lt $((20 * 1024 * 1024)) ]; then
    echo "test.sh: $((free_kb / 1024)) MiB free under $CARGO_TARGET_DIR: removing its debug builds" >&2
    rm -rf "$CARGO_TARGET_DIR/debug"
fi
# The mount serves through per-CPU io_uring queues where the kernel lets it (Linux 6.14+ and
# this switch, as root); the tests check those queues against /dev/fuse, and fail if the
# switch is missing.
if [ -e /sys/module/fuse/parameters/enable_uring ]; then
    echo 1 > /sys/module/fuse/parameters/enable_uring
fi
# Cargo names the artifacts of workspace crates alike in every checkout and judges them
# fresh by the source files their last build read, so a target directory shared with
# another checkout (another clone on this machine) can hand this one that checkout's build,
# binaries included (seen: a clone's tests ran the other clone's git-remote-cairn). This
# workspace's own crates are always rebuilt here (a few minutes; dependencies stay).
cargo clean -q -p cairn-tests -p cairn-store -p cairn-fuse -p cairn-gc -p cairn-unixfs \
    -p cairn-app -p cairn-env -p cairn-net -p cairn-names -p cairn-git -p cairn -p cairn-fuzz
rm -f "$CARGO_TARGET_DIR/debug/cairn" "$CARGO_TARGET_DIR/debug/git-remote-cairn"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The end-to-end tests run the binaries (cairn, git-remote-cairn) as users do: build them
# first, so no test ever runs one left over from an older build.
cargo build --workspace --bins
# A hung test must not hang CI: the whole suite gets 40 minutes.
timeout --kill-after=30 2400 cargo test --workspace --no-fail-fast
