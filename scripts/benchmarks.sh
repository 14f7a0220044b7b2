#!/usr/bin/env bash
# Regenerates the measured table at the top of BENCHMARKS.md (README:
# "Benchmarks"): runs every benchmark, each figure beside its peer measured
# in the same run, and writes the table between the markers.
#
#   bash scripts/benchmarks.sh                 # every benchmark (~35 min on 2 cores)
#   bash scripts/benchmarks.sh store main_job  # only these; other rows keep their last figures
#
# The rows come from `BENCH_JSON` lines the benches write (see
# shared/benches/support/record.rs) and, for the criterion benches, from
# criterion's estimates (median). They are kept in
# target/benchmarks/results.jsonl, so a partial run replaces only its own rows.
# Run it on a quiet machine: every figure is a time.
set -euo pipefail

cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."

# shellcheck source=common.sh
source scripts/common.sh

ALL=(core compare capture outbox session prescreen anonymise pipeline detection plates reports transport store capacity main_job)

crate_of() {
  case $1 in
    core | compare) echo inspection-core ;;
    capture | outbox | session | prescreen | anonymise | pipeline | main_job) echo edge-agent ;;
    detection | plates | reports | transport | store | capacity) echo central ;;
    *) die "unknown benchmark '$1' (known: ${ALL[*]})" ;;
  esac
}

selected=("$@")
if ((${#selected[@]} == 0)); then selected=("${ALL[@]}"); fi
for bench in "${selected[@]}"; do crate_of "$bench" >/dev/null; done

step "system packages"
# mosquitto: the transport benchmark's peer broker; postgresql: the store
# benchmark's server; jq: this script's tables.
ensure_packages ca-certificates pkg-config libclang1-14 mosquitto postgresql fonts-dejavu-core jq

step "toolchain"
ensure_toolchain

step "models (cached in $(cache_root))"
ensure_models

out="${CARGO_TARGET_DIR:-target}/benchmarks"
mkdir -p "$out"
out=$(cd "$out" && pwd)
results="$out/results.jsonl"
touch "$results"
export CRITERION_HOME="$out/criterion"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# --- Criterion rows ---------------------------------------------------------
# Criterion benches print their own reports; their rows here are read from
# CRITERION_HOME/<group>/<function>/new/estimates.json (the median).
median_ms() {
  local file="$CRITERION_HOME/$1/new/estimates.json"
  [[ -f $file ]] || die "no criterion estimate at $file"
  jq '.median.point_estimate / 1e6' "$file"
}

# pair COMMAND WHAT OURS_NAME OURS_ID PEER_NAME PEER_ID
pair() {
  jq -nc --arg command "$1" --arg what "$2" \
    --arg on "$3" --argjson ov "$(median_ms "$4")" \
    --arg pn "$5" --argjson pv "$(median_ms "$6")" \
    '{command: $command, what: $what, ours: {name: $on, value: $ov, unit: "ms"},
      peer: {name: $pn, value: $pv, unit: "ms"}, ratio: ($ov / $pv)}' >>"$BENCH_JSON"
}

# alone COMMAND WHAT NAME ID
alone() {
  jq -nc --arg command "$1" --arg what "$2" --arg on "$3" --argjson ov "$(median_ms "$4")" \
    '{command: $command, what: $what, ours: {name: $on, value: $ov, unit: "ms"}}' >>"$BENCH_JSON"
}

criterion_rows() {
  local c="cargo bench --profile dev -p $(crate_of "$1") --bench $1"
  case $1 in
    core)
      pair "$c" "letterbox a 1920x1080 frame into the 640 NCHW tensor, median" \
        "fused bilinear" letterbox_1080p_to_640/ours_fused_bilinear_nchw \
        "image::imageops::resize + layout" letterbox_1080p_to_640/peer_image_resize_triangle_then_nchw
      pair "$c" "quality gate on a 1080p frame, median" \
        "ours" quality_1080p/ours_assess \
        "image thumbnail + Laplacian" quality_1080p/peer_image_thumbnail_then_laplacian
      alone "$c" "YOLOv8 seg head [1,37,8400] decode + NMS, median" "ours" decode_nms_seg_1x37x8400
      ;;
    capture)
      pair "$c" "YUYV -> RGB, 1080p, median" \
        "integer BT.601" yuyv_to_rgb_1080p/ours_integer_bt601 \
        "float per pixel" yuyv_to_rgb_1080p/peer_float_per_pixel
      pair "$c" "JPEG check + decode, 1080p, median" \
        "EOI check + image" jpeg_decode_1080p/ours_eoi_check_then_image \
        "image::load_from_memory" jpeg_decode_1080p/peer_image_load_from_memory
      ;;
    outbox)
      pair "$c" "edge outbox: commit one ~600 B event, median" \
        "synchronous=FULL (default)" append_event/full "synchronous=NORMAL" append_event/normal
      pair "$c" "edge outbox: commit one 500 KiB image, median" \
        "synchronous=FULL (default)" append_image_500k/full "synchronous=NORMAL" append_image_500k/normal
      ;;
    session)
      alone "$c" "session tracker: 1000 frames from 4 cameras, median" "ours" session/observe_1000_frames_4_cameras
      ;;
    prescreen)
      local size precision
      for size in 320 640; do
        for precision in fp32 int8; do
          pair "$c" "edge pre-screen: platedet $precision at $size, one frame (letterbox, model, decode), one thread, median" \
            "tract" "prescreen_$size/tract_$precision" "ONNX Runtime" "prescreen_$size/ort_$precision"
        done
      done
      ;;
    anonymise)
      pair "$c" "edge face search: CenterFace on a 1280x799 frame at 640x416 (resize, model; tract also decodes), one thread, median" \
        "tract" anonymise/tract_search "ONNX Runtime" anonymise/ort_search
      pair "$c" "edge face redaction: one face of a 1280x799 frame, median" \
        "blur" anonymise/redact_blur "pixelate" anonymise/redact_pixelate
      pair "$c" "edge anonymisation per selected frame with a face, median" \
        "search + redact + JPEG re-encode" anonymise/step_and_jpeg "search + redact" anonymise/step
      ;;
    pipeline)
      pair "$c" "whole edge pipeline, 24 frames (capture, quality, pre-screen, session, outbox), median" \
        "platedet fp32 at 320" pipeline_24_frames/tract_fp32_320 \
        "platedet fp32 at 640" pipeline_24_frames/tract_fp32_640
      ;;
  esac
}

# --- Build once, then run ---------------------------------------------------
step "build the benchmarks (--profile dev: dependencies optimised)"
crates=()
for bench in "${selected[@]}"; do
  crate=$(crate_of "$bench")
  [[ " ${crates[*]} " == *" -p $crate "* ]] || crates+=(-p "$crate")
done
cargo bench --profile dev --locked --no-run "${crates[@]}"

fresh="$out/fresh.jsonl"
: >"$fresh"
for bench in "${selected[@]}"; do
  step "benchmark $bench"
  export BENCH_JSON="$out/$bench.jsonl"
  : >"$BENCH_JSON"
  cargo bench --profile dev --locked -p "$(crate_of "$bench")" --bench "$bench"
  criterion_rows "$bench"
  [[ -s $BENCH_JSON ]] || die "benchmark $bench recorded no figure"
  jq -c --arg bench "$bench" --arg at "$(date -u +%F)" '. + {bench: $bench, measured: $at}' \
    "$BENCH_JSON" >>"$fresh"
done

# Rows of the benchmarks not run this time stay as they were.
keep=$(printf '%s\n' "${selected[@]}" | jq -R . | jq -sc .)
jq -c --argjson rerun "$keep" 'select(.bench as $b | $rerun | index($b) | not)' "$results" >"$out/kept.jsonl"
cat "$out/kept.jsonl" "$fresh" >"$results"

# --- The table ----------------------------------------------------------------
step "BENCHMARKS.md"
table="$out/table.md"
{
  echo "Generated by \`bash scripts/benchmarks.sh\` (commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)," \
    "$(nproc) CPU cores: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), no GPU)." \
    "The ratio is ours / peer, both measured in the same run: for a time, below 1 is faster;" \
    "for a rate, above 1 is faster. The sections below explain each benchmark."
  echo
  echo "| benchmark | ours | peer (same run) | ours / peer | measured | command |"
  echo "|---|---|---|---|---|---|"
  order=$(printf '%s\n' "${ALL[@]}" | jq -R . | jq -sc .)
  jq -rs --argjson order "$order" '
    def num: if . >= 100 then (round | tostring)
      elif . >= 10 then ((. * 10 | round) / 10 | tostring)
      elif . >= 1 then ((. * 100 | round) / 100 | tostring)
      else ((. * 1000 | round) / 1000 | tostring) end;
    def fig: if .unit == "ms" and .value < 1 then "\(.value * 1000 | num) us"
      else "\(.value | num) \(.unit)" end;
    sort_by(.bench as $b | $order | index($b)) | .[] |
    "| \(.what) | \(.ours.name): \(.ours | fig) | " +
    (if .peer then "\(.peer.name): \(.peer | fig) | \(.ratio | num)x" else "- | -" end) +
    " | \(.measured) | `\(.command)` |"' "$results"
} >"$table"

begin='<!-- generated by scripts/benchmarks.sh: begin -->'
end='<!-- generated by scripts/benchmarks.sh: end -->'
grep -qF "$begin" BENCHMARKS.md && grep -qF "$end" BENCHMARKS.md ||
  die "BENCHMARKS.md lacks the markers: $begin ... $end"
awk -v begin="$begin" -v end="$end" -v table="$table" '
  $0 == begin { print; while ((getline line < table) > 0) print line; skip = 1; next }
  $0 == end { skip = 0 }
  !skip { print }' BENCHMARKS.md >"$out/BENCHMARKS.md"
mv "$out/BENCHMARKS.md" BENCHMARKS.md
cat "$table"
echo "BENCHMARKS.md updated ($(wc -l <"$results") rows in $results)"
