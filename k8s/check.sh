#!/usr/bin/env bash
# Renders every overlay under k8s/overlays with `kubectl kustomize` and
# checks it offline:
#   1. kubernetes-validate --strict against Kubernetes $K8S_VERSION (built-in
#      kinds; custom resources are skipped by name, with the reason);
#   2. k8s/policy.py (requests/limits, probes, security contexts, GPUs only
#      on inference and llm, autoscaling ranges, default deny, no Secret
#      values);
#   3. `central validate --skip-file-checks` on every central.toml in the
#      rendered ConfigMaps, when a central binary is found ($CENTRAL, then
#      target/{release,debug}/central, then PATH; REQUIRE_CENTRAL=1 makes a
#      missing binary a failure, for CI after the build);
#   4. yamllint on k8s/ when it is installed (optional).
# Exits 1 if anything fails. kubernetes-validate and PyYAML are installed
# once, pinned, into a venv under the user cache; later runs are offline and
# take seconds.
set -euo pipefail

K8S_VERSION=1.32.0            # the clusters' Kubernetes minor (kubectl 1.32)
KUBERNETES_VALIDATE=1.37.0    # ships schemas for 1.32 and later
PYYAML=6.0.3

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/inspection-system/venv-k8s
PY=$VENV/bin/python

need() { command -v "$1" >/dev/null || { echo "k8s/check.sh: $1 is required ($2)" >&2; exit 1; }; }
need kubectl "kubectl 1.32+ with built-in kustomize"
need python3 "Python 3 with venv"

if ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -qx "$KUBERNETES_VALIDATE" \
   || ! "$PY" -c "import yaml, sys; sys.exit(yaml.__version__ != '$PYYAML')" 2>/dev/null; then
  echo "== installing kubernetes-validate==$KUBERNETES_VALIDATE PyYAML==$PYYAML into $VENV (once)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE" "PyYAML==$PYYAML"
fi

CENTRAL_BIN=${CENTRAL:-}
if [[ -z "$CENTRAL_BIN" ]]; then
  for c in "$ROOT/target/release/central" "$ROOT/target/debug/central" "$(command -v central || true)"; do
    if [[ -n "$c" && -x "$c" ]]; then CENTRAL_BIN=$c; break; fi
  done
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failures=()
passed=()

for dir in "$HERE"/overlays/*/; do
  overlay=$(basename "$dir")
  echo "== overlay $overlay"
  rendered=$WORK/$overlay.yaml
  if ! kubectl kustomize "$dir" >"$rendered" 2>"$WORK/$overlay.err"; then
    cat "$WORK/$overlay.err"
    failures+=("$overlay: kubectl kustomize failed")
    continue
  fi
  if ! "$PY" "$HERE/policy.py" "$overlay" "$rendered" \
      --builtin-out "$WORK/$overlay.builtin.yaml" --toml-dir "$WORK/$overlay.toml"; then
    failures+=("$overlay: policy")
  fi
  if [[ -s "$WORK/$overlay.builtin.yaml" ]]; then
    if "$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "$WORK/$overlay.builtin.yaml"; then
      echo "  kubernetes-validate --strict (Kubernetes $K8S_VERSION): ok"
    else
      failures+=("$overlay: kubernetes-validate")
    fi
  fi
  if [[ -n "$CENTRAL_BIN" ]]; then
    for toml in "$WORK/$overlay.toml"/*.toml; do
      if out=$("$CENTRAL_BIN" validate --skip-file-checks --config "$toml" 2>&1); then
        echo "  central validate $(basename "$toml"): ok"
      else
        echo "$out" | sed 's/^/  /'
        failures+=("$overlay: central validate $(basename "$toml")")
      fi
    done
  elif [[ "${REQUIRE_CENTRAL:-0}" == 1 ]]; then
    echo "  central validate: no central binary, and REQUIRE_CENTRAL=1"
    failures+=("$overlay: central validate (no binary)")
  else
    echo "  central validate: skipped (no central binary; set CENTRAL or build it)"
  fi
  passed+=("$overlay")
done

# The ArgoCD Applications are plain YAML of a CRD: parse them and check that
# each points at an overlay that exists.
echo "== argocd"
for app in "$HERE"/argocd/*.yaml; do
  path=$("$PY" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["spec"]["source"]["path"])' "$app")
  if [[ -d "$ROOT/$path" ]]; then
    echo "  $(basename "$app"): $path exists (Application CRD: schema not checked)"
  else
    echo "  $(basename "$app"): source.path $path does not exist"
    failures+=("argocd $(basename "$app")")
  fi
done

if command -v yamllint >/dev/null; then
  echo "== yamllint"
  if yamllint -s -c "$HERE/.yamllint" "$HERE"; then
    echo "  ok"
  else
    failures+=("yamllint")
  fi
else
  echo "== yamllint: not installed, skipped (apt-get install yamllint)"
fi

echo
if ((${#failures[@]})); then
  echo "k8s/check.sh: FAILED"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
echo "k8s/check.sh: ok (${passed[*]})"
