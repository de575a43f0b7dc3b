#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: `fuzz/run.sh [seconds-per-target]` (default 600).
#
# - Needs cargo-fuzz (`cargo install cargo-fuzz`). cargo-fuzz passes nightly-only flags
#   (-Zsanitizer=address, sanitizer coverage); RUSTC_BOOTSTRAP=1 lets the stable toolchain
#   accept them. AddressSanitizer links on stable x86_64 Linux; where it does not, run with
#   FUZZ_SANITIZER=none (plain libFuzzer: still finds panics and broken assertions).
# - Targets run one after another, each as one nice'd single-job libFuzzer process, bounded by
#   -max_total_time (and -rss_limit_mb); FUZZ_PARALLEL=2 runs two at a time.
# - Each target grows its corpus in fuzz/corpus/<target>/. Keep the committed corpus small: the
#   seed-* files plus a set cover of the rest by edge coverage, e.g.
#     mkdir min && cp corpus/T/seed-* min/ && target/x86_64-unknown-linux-gnu/release/T \
#       -set_cover_merge=1 -use_counters=0 -use_cmp=0 min corpus/T && rm -r corpus/T && mv min corpus/T
#   (`cargo fuzz cmin T` keeps every input with a new feature, counters included: far more files).
# - A crash stops that target and leaves its input in fuzz/artifacts/<target>/ (reproduce with
#   `cargo fuzz run -O <target> <file>`); fix the bug, then copy the input to
#   fuzz/regressions/<target>/, which `cargo test --release --test fuzz_corpus` replays.
# - libFuzzer's final lines for each target go to fuzz/logs/<target>.log.
set -euo pipefail

seconds="${1:-600}"
sanitizer="${FUZZ_SANITIZER:-address}"
parallel="${FUZZ_PARALLEL:-1}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

targets=$(cargo fuzz list)
# Built once, then run directly: `cargo fuzz run` would rebuild whenever src/ changed meanwhile.
nice -n 19 cargo fuzz build -O --sanitizer "$sanitizer"
bin="target/$(rustc -vV | sed -n 's/^host: //p')/release"
mkdir -p logs

run_one() {
    local target="$1"
    mkdir -p "corpus/$target" "artifacts/$target"
    if nice -n 19 "$bin/$target" -artifact_prefix="artifacts/$target/" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
        "corpus/$target" >"logs/$target.log" 2>&1; then
        echo "$target: ok ($(grep -E '^(Done|#[0-9]+.*DONE)' "logs/$target.log" | tail -1))"
    else
        echo "$target: FAILED, see fuzz/logs/$target.log and fuzz/artifacts/$target/"
        return 1
    fi
}

status=0
running=0
for target in $targets; do
    run_one "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$parallel" ]; then
        wait -n || status=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
done
exit "$status"
