#!/usr/bin/env bash
# README command 1: the whole system on this machine, on its embedded
# defaults. On a fresh Debian 12 machine with a Rust toolchain it installs the
# few Debian packages the build needs, fetches the pinned models into the user
# cache (once; verified), builds `central` and `edge-agent`, and runs
# `central demo`: central with all roles in one process (SQLite, embedded MQTT
# broker behind TLS, HTTPS upload, local images, the worker with the real
# models and the embedded report writer) and an edge agent whose cameras
# replay a vehicle's pickup, then its return with painted damage.
#
#   bash demo.sh                 # results under ./demo-output
#   bash demo.sh --dir /tmp/x    # any `central demo` option (see --help)
#
# Ctrl-C stops everything cleanly. Running it again starts afresh.
set -euo pipefail

cd -- "$(dirname -- "${BASH_SOURCE[0]}")"

# shellcheck source=scripts/common.sh
source scripts/common.sh

# libclang and pkg-config: the V4L2 bindings of the edge agent are generated
# at build time. fonts-dejavu-core: the plate rendered on the demo vehicle,
# and the labels and text of the pictures and the PDF report.
step "system packages"
ensure_packages ca-certificates pkg-config libclang1-14 fonts-dejavu-core

step "toolchain"
ensure_toolchain

step "models (cached in $(cache_root); downloaded once)"
ensure_models

# The same (dev) profile as the tests, so the test command reuses this build;
# dependencies are optimised in it (Cargo.toml).
step "build central and edge-agent"
cargo build --locked -p central -p edge-agent --bins

step "run: central demo $*"
exec "${CARGO_TARGET_DIR:-target}/debug/central" demo "$@"
