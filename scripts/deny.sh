#!/usr/bin/env bash
# cargo deny against deny.toml (CI runs this; README "Run the tests").
#
# Licences, bans (OpenSSL, wildcards) and sources (crates.io only) are
# checked on every run. Security advisories need the RustSec database, a git
# repository on github.com: they are checked whenever it can be fetched, and
# the run says plainly when it could not ("advisories: SKIPPED").
set -euo pipefail
cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.."
# shellcheck source=common.sh
source scripts/common.sh

DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "cargo-deny $DENY_VERSION\$"; then
  step "installing cargo-deny $DENY_VERSION"
  cargo install cargo-deny --locked --version "$DENY_VERSION"
fi

checks=(bans licenses sources)
if timeout 20 git ls-remote --exit-code https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  checks+=(advisories)
else
  echo "advisories: SKIPPED (the RustSec database on github.com cannot be reached from this machine)"
fi
cargo deny --log-level error check "${checks[@]}"
