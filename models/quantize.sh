#!/usr/bin/env bash
# Builds the edge pre-screen variants of platedet in the model cache:
#   $CACHE/models/platedet/platedet.fp32.onnx       fp16 export rewritten as fp32
#   $CACHE/models/platedet/platedet.int8.onnx       int8 QDQ (ONNX Runtime static quantization)
#   $CACHE/models/platedet/platedet.fp32.320.onnx   fp32 with the head's anchor grid rebuilt for 320x320
#   $CACHE/models/platedet/platedet.int8.320.onnx   int8 QDQ of the 320 model
#   $CACHE/models/platedet/platedet.fp32.batch.onnx fp32 with a dynamic batch dimension (central batching)
# Needs `bash models/fetch.sh` first. Idempotent: an output is kept when its
# `.recipe` stamp matches the hash of this script, quantize.py, platedet.onnx
# and the calibration size. The Python tools live in a
# throwaway virtualenv in the cache ($CACHE/venv-quantize), never in the repo.
# Usage: bash models/quantize.sh [--force] [--synthetic N]
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${INSPECTION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/inspection-system}
venv=$CACHE/venv-quantize
# Pinned: onnxruntime 1.31.1 is the runtime the project links; onnx and
# numpy are the versions this recipe was verified with.
pins=(onnxruntime==1.31.1 onnx==1.23.2 numpy==2.4.6 pillow==12.0.0 protobuf==7.36.2)
stamp=$venv/.pins

if [[ ! -x $venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "${pins[*]}" ]]; then
    echo "quantize: creating $venv (${pins[*]})"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
    echo "${pins[*]}" > "$stamp"
else
    echo "quantize: ok $venv (cached)"
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.quantize.lock"
flock 9
QUANTIZE_SH="$here/quantize.sh" exec "$venv/bin/python" "$here/quantize.py" --models "$CACHE/models" "$@"
