#!/usr/bin/env bash
# edge-agent/packaging/check.sh - static checks of the board packaging:
#   - `systemd-analyze verify` of edge-agent.service: any message fails (it
#     exits 0 on unknown keys and bad values, so the output is what counts);
#   - `systemd-analyze security --offline`: the sandbox's exposure score must
#     stay at or below $MAX_EXPOSURE (default 2.5; 1.6 when written);
#   - the maintainer scripts parse (sh -n) and carry the #DEBHELPER# token
#     cargo-deb needs.
# The unit names /usr/bin/edge-agent, which is not installed on a build
# machine, and verify refuses a missing ExecStart binary: the unit is checked
# as a copy in a temporary directory with ExecStart pointed at /bin/true.
# Needs systemd >= 252 (Debian 12) for `security --offline`; no root, no
# running systemd (works in a container).
set -euo pipefail

HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
UNIT=$HERE/edge-agent.service
MAX_EXPOSURE=${MAX_EXPOSURE:-2.5}

command -v systemd-analyze >/dev/null \
  || { echo "error: systemd-analyze not found (Debian package systemd)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf -- "$tmp"' EXIT
sed 's#^ExecStart=/usr/bin/edge-agent #ExecStart=/bin/true #' "$UNIT" >"$tmp/edge-agent.service"
grep -q '^ExecStart=/bin/true ' "$tmp/edge-agent.service" \
  || { echo "error: no 'ExecStart=/usr/bin/edge-agent ' line in $UNIT" >&2; exit 1; }

echo "==> systemd-analyze verify edge-agent.service ($(systemctl --version | head -1))"
# --man=no: the Documentation= link is not looked up (no man pages in containers).
out=$(systemd-analyze verify --man=no "$tmp/edge-agent.service" 2>&1) || {
  printf '%s\n' "$out"; echo "FAILED: systemd-analyze verify"; exit 1; }
if [[ -n "$out" ]]; then
  printf '%s\n' "$out"
  echo "FAILED: systemd-analyze verify printed warnings"
  exit 1
fi
echo "ok: no warnings"

echo "==> systemd-analyze security --offline (threshold $MAX_EXPOSURE)"
sec=$(systemd-analyze security --offline=true "$tmp/edge-agent.service" 2>&1) || true
score=$(printf '%s\n' "$sec" | sed -n 's/.*Overall exposure level for edge-agent.service: \([0-9.]*\).*/\1/p')
[[ -n "$score" ]] || { printf '%s\n' "$sec" | tail -5; echo "FAILED: no exposure score"; exit 1; }
printf '%s\n' "$sec" | grep '✗' || true
echo "exposure: $score"
awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }' \
  || { echo "FAILED: exposure $score > $MAX_EXPOSURE"; exit 1; }

echo "==> maintainer scripts"
for script in "$HERE"/debian/*; do
  sh -n "$script" || { echo "FAILED: $script does not parse"; exit 1; }
  grep -q '^#DEBHELPER#$' "$script" || { echo "FAILED: $script lacks #DEBHELPER#"; exit 1; }
  echo "ok: $(basename "$script")"
done

echo "packaging checks passed"
