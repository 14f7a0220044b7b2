#!/usr/bin/env bash
# The project's test command (README: "Run the tests"). On a fresh Debian 12
# machine with a Rust toolchain it installs what the tests need, fetches the
# pinned models into the user cache, and runs every gate CI runs:
#   rustfmt check, cargo deny, clippy with -D warnings, all tests, the
#   Kubernetes manifests, the boards' cross build, short fuzz runs, rustdoc
#   with -D warnings.
# Safe to run again: installs and downloads are skipped when already done.
set -euo pipefail

cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."

# shellcheck source=../scripts/common.sh
source scripts/common.sh

# Free disk space, at the start and again if a step fails: a build that runs
# out of space fails with "No space left on device" deep in a compiler's
# output, and this says at once whether the machine or the build filled it.
disk_report() { df -h . "$(cache_root)" 2>/dev/null | sed 's/^/    /'; }
step "free disk space"
mkdir -p "$(cache_root)"
disk_report
trap 'rc=$?; if [[ $rc -ne 0 ]]; then step "failed (exit $rc); free disk space now"; disk_report; fi' EXIT

# --- System packages -------------------------------------------------------
# Debian packages the build and the tests need. Later capabilities add to this
# list. libclang: the v4l crate runs bindgen. mosquitto and its clients: the
# second MQTT broker and a foreign client the transport tests use (the tests
# start their own broker processes on loopback ports). postgresql: the store
# conformance suite and the job-queue tests start their own server in a
# temporary directory (the package's own cluster is not used). fonts-dejavu-core:
# the fonts the OCR tests render synthetic plates with and the report exports
# draw and embed. poppler-utils: pdftotext/pdfinfo/pdfimages read the report
# PDF back in tests/report_export.rs. yamllint: the
# Kubernetes manifests' lint (k8s/check.sh). systemd: `systemd-analyze verify`
# of the board's unit (cross/check.sh). redis-server: the staff API's cache
# tests start their own server on a loopback port (Debian's service is not
# used). python3-venv: the pinned Python tools below. chromium and
# chromium-driver: the staff web UI's tests drive a headless browser over
# WebDriver (central/tests/ui_browser.rs). opencv-doc: real photos with
# people in them, for the face anonymisation tests (edge-agent/tests/
# anonymise_faces.rs).
APT_PACKAGES=(ca-certificates pkg-config libclang1-14 mosquitto mosquitto-clients postgresql redis-server fonts-dejavu-core poppler-utils yamllint systemd python3-venv chromium chromium-driver opencv-doc)

step "system packages"
ensure_packages "${APT_PACKAGES[@]}"

step "toolchain"
ensure_toolchain rustfmt clippy

# --- Models ------------------------------------------------------------------
step "models (cached in $(cache_root))"
ensure_models

# --- Python tools ----------------------------------------------------------
# schemathesis (PyPI), pinned, in a venv in the user cache: tests/api.rs runs
# it against the staff API's served OpenAPI document.
SCHEMATHESIS_VERSION=4.32.5
step "schemathesis $SCHEMATHESIS_VERSION (cached in $(cache_root)/venv-schemathesis)"
ST_VENV="$(cache_root)/venv-schemathesis"
if ! "$ST_VENV/bin/st" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
  python3 -m venv "$ST_VENV"
  "$ST_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$ST_VENV/bin/st" --version

# moto (PyPI), pinned, in a venv in the user cache: a real S3 server for the
# S3 object store's test (central/tests/residency.rs).
MOTO_VERSION=5.2.6
step "moto $MOTO_VERSION (cached in $(cache_root)/venv-moto)"
MOTO_VENV="$(cache_root)/venv-moto"
moto_version() { "$MOTO_VENV/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null; }
if [[ "$(moto_version)" != "$MOTO_VERSION" ]]; then
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
echo "moto $(moto_version)"

# --- Gates -------------------------------------------------------------------
# Incremental compilation only costs time and disk in a one-shot run.
if [[ "${CI:-}" == "true" ]]; then export CARGO_INCREMENTAL=0; fi
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step "cargo fmt --check"
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --check

# The dependency tree: licences, bans and sources (advisories whenever the
# RustSec database can be fetched). deny.toml says what is allowed.
step "cargo deny"
bash scripts/deny.sh

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

# The Kubernetes manifests: every overlay rendered (kubectl kustomize),
# validated (kubernetes-validate --strict, pinned), the policy test, and every
# central.toml in a ConfigMap checked by the binary the tests just built.
step "k8s manifests"
REQUIRE_CENTRAL=1 CENTRAL="${CARGO_TARGET_DIR:-target}/debug/central" bash k8s/check.sh

# The boards: the edge agent cross-built for aarch64 with Debian's cross
# toolchain, smoke-tested under qemu (version, validate, a systemd-style run:
# READY, watchdog, SIGHUP, STOPPING), its unit verified and its .deb built and
# listed. Prints "SKIPPED: <reason>" and passes when the Rust target or the
# cross toolchain cannot be installed. The aarch64 build lives in the user
# cache, like the models: a clean one takes about 11 minutes on 2 cores, a
# later run rebuilds only the project's own crates.
step "edge agent for the boards (cross/check.sh)"
if ! cargo deb --version >/dev/null 2>&1; then
  cargo install cargo-deb --locked --version 3.8.0
fi
CARGO_TARGET_DIR="$(cache_root)/target-aarch64" \
  bash cross/check.sh

# The fuzz targets (fuzz/): the committed seeds and every input that once
# crashed a target are replayed, then each target fuzzes for 20 s. A longer
# run: `bash scripts/fuzz.sh 3600` (README "Fuzzing").
step "fuzzing (20 s per target)"
bash scripts/fuzz.sh 20

step "cargo doc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "all gates passed"
