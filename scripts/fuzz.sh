#!/usr/bin/env bash
# The fuzz targets in fuzz/ (cargo fuzz, libFuzzer), README "Fuzzing".
#
#   bash scripts/fuzz.sh                 every target for 30 s (what CI runs)
#   bash scripts/fuzz.sh 3600            every target for an hour each
#   bash scripts/fuzz.sh 600 wire_decode one target for ten minutes
#   bash scripts/fuzz.sh seeds           rewrite fuzz/seeds/ from the examples
#
# Each run first replays the committed seeds (fuzz/seeds/<target>/) and every
# input that once crashed a target (fuzz/regressions/<target>/, kept there
# once fixed), then fuzzes. What it learns is kept in the user cache
# ($(cache_root)/fuzz-corpus/<target>/) so a later run goes on from there. A
# crash stops the run with a non-zero exit; the input is saved under
# fuzz/artifacts/<target>/ and the command to reproduce it is printed. Fix it,
# then copy the input into fuzz/regressions/<target>/.
#
# Stable Rust, so no AddressSanitizer (--sanitizer none): the targets are safe
# Rust, and what libFuzzer catches is a panic, an abort, a timeout (10 s per
# input) or more than 2 GiB of memory.
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
# shellcheck source=common.sh
source scripts/common.sh

FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "cargo-fuzz $FUZZ_VERSION\$"; then
  step "installing cargo-fuzz $FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$FUZZ_VERSION"
fi

TARGETS=(wire_decode topic_parse plate_normalize image_decode config_central config_edge)

# The instrumented build lives in the user cache, like the boards' aarch64
# build: the config targets link the central and edge-agent crates, whose
# dependencies (ONNX Runtime's bindings, candle, sqlx, rustls...) take about
# half an hour to build with libFuzzer's instrumentation on 2 cores; a later
# run rebuilds only the project's own crates.
FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$(cache_root)/target-fuzz}"

if [[ "${1:-}" == "seeds" ]]; then
  step "writing fuzz/seeds/ from the project's examples"
  (cd fuzz && cargo run --locked --release --target-dir "$FUZZ_TARGET_DIR" --example write_seeds)
  exit 0
fi

seconds=${1:-30}
[[ "$seconds" =~ ^[0-9]+$ ]] || die "usage: scripts/fuzz.sh [seconds [target...]] | seeds"
shift || true
if [[ $# -gt 0 ]]; then TARGETS=("$@"); fi

step "building the fuzz targets"
(cd fuzz && cargo fuzz build --sanitizer none --release --target-dir "$FUZZ_TARGET_DIR")

for target in "${TARGETS[@]}"; do
  corpus="$(cache_root)/fuzz-corpus/$target"
  mkdir -p "$corpus"
  dirs=("$corpus" "fuzz/seeds/$target")
  if [[ -d "fuzz/regressions/$target" ]]; then dirs+=("fuzz/regressions/$target"); fi
  step "fuzzing $target for $seconds s (seeds, regressions, then new inputs)"
  # The first folder receives what libFuzzer finds; the committed ones are
  # only read. Paths are absolute: cargo fuzz runs the binary in fuzz/.
  abs=()
  for d in "${dirs[@]}"; do abs+=("$(cd "$d" && pwd)"); done
  if ! (cd fuzz && cargo fuzz run --sanitizer none --release --target-dir "$FUZZ_TARGET_DIR" "$target" "${abs[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=32768 \
        -print_final_stats=1 2>&1 | grep -Ev '^#[0-9]+\s+(NEW|REDUCE|pulse)'); then
    die "fuzz target $target failed: the input is in fuzz/artifacts/$target/ (reproduce: cd fuzz && cargo fuzz run --sanitizer none --release --target-dir $FUZZ_TARGET_DIR $target artifacts/$target/<file>)"
  fi
done
step "fuzzing passed: ${TARGETS[*]} (${seconds} s each)"
