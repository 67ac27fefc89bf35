#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60), FUZZ_JOBS at a time (default 2), from seed corpora
# built out of ../shared/fixtures (CAR files, and the blocks inside them, sorted by codec)
# plus a few hand-made journals and Bitswap messages. Needs nightly Rust; installs cargo-fuzz
# if missing.
# Crashes land in fuzz/artifacts/{target}/; copy each into fuzz/regressions/{target}/ once it
# is fixed, so that `cargo test` replays it on stable.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
. scripts/env.sh
export CARGO_TARGET_DIR="${CAIRN_FUZZ_TARGET:-$HOME/.cache/cairn-fuzz-target}"
shared="${CAIRN_SHARED:-$(cd .. && pwd)/shared}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dagpb unixfs hamt dagcbor dagjson car journal dag bitswap app ledger ipns git gitdoc gitbundle gitcar)

python3 scripts/fuzz_seeds.py "$shared/fixtures" fuzz/corpus fuzz/regressions
cd fuzz
cargo +nightly fuzz build -O --debug-assertions
run() {
    local t="$1"
    mkdir -p "corpus/$t" "artifacts/$t"
    # CPU seconds (user + system) of the fuzzer, for FUZZING.md.
    if /usr/bin/time -f "%U %S" -o "artifacts/$t.cpu" \
        cargo +nightly fuzz run -O --debug-assertions "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -max_len=1048576 \
        -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"artifacts/$t.log" 2>&1; then
        local runs cpu
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "artifacts/$t.log" | grep -o '[0-9]*$')
        cpu=$(awk '{printf "%.0f", $1 + $2}' "artifacts/$t.cpu")
        echo "$t: ok, $runs runs, $cpu CPU seconds, corpus $(ls "corpus/$t" | wc -l)"
    else
        echo "$t: FAILED, see fuzz/artifacts/$t.log and fuzz/artifacts/$t/"
    fi
}
i=0
for t in "${targets[@]}"; do
    run "$t" &
    i=$((i + 1))
    if [ $((i % ${FUZZ_JOBS:-2})) -eq 0 ]; then wait; fi
done
wait
