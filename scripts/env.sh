# shellcheck shell=bash
# Sourced by the other scripts (and by developers: `source scripts/env.sh`). It makes sure libtorch
# is installed, then exports what cargo and torch-sys need. Idempotent: the second time it only
# checks the installed version.
#
# Environment it honours:
#   LIBTORCH          your own libtorch 2.11.0 (a folder with include/ and lib/); nothing is installed
#   MVT_CACHE         cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/mvt)
#   MVT_TORCH_VENV    the virtualenv holding PyPI's torch wheel (default: $MVT_CACHE/torch-2.11.0)
#   CARGO_TARGET_DIR  cargo's build folder (default: $MVT_CACHE/target, shared by every clone)

MVT_TORCH_VERSION=2.11.0
MVT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MVT_CACHE="${MVT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mvt}"
MVT_TORCH_VENV="${MVT_TORCH_VENV:-$MVT_CACHE/torch-$MVT_TORCH_VERSION}"

mvt_log() { printf '[mvt setup] %s\n' "$*" >&2; }

# The torch package folder inside a virtualenv, found without importing torch (an import takes
# seconds and loads CUDA libraries we do not need here).
mvt_torch_dir() {
  local site
  for site in "$1"/lib/python3*/site-packages; do
    if [ -f "$site/torch/version.py" ]; then
      printf '%s\n' "$site/torch"
      return 0
    fi
  done
  return 1
}

mvt_installed_version() {
  sed -n "s/^__version__ = '\\([^'+]*\\).*/\\1/p" "$1/version.py" 2>/dev/null
}

mvt_install_torch() {
  local python
  python="$(command -v python3 || true)"
  if [ -z "$python" ]; then
    mvt_log "python3 is required to install libtorch from PyPI's torch wheel; install it, or set LIBTORCH"
    return 1
  fi
  mkdir -p "$MVT_CACHE"
  if [ ! -x "$MVT_TORCH_VENV/bin/pip" ]; then
    mvt_log "creating a virtualenv at $MVT_TORCH_VENV"
    "$python" -m venv "$MVT_TORCH_VENV" || return 1
  fi
  mvt_log "installing torch==$MVT_TORCH_VERSION from PyPI (about 4.6 GB with its CUDA libraries; once per machine)"
  "$MVT_TORCH_VENV/bin/pip" install --disable-pip-version-check --progress-bar on \
    "torch==$MVT_TORCH_VERSION" >&2 || return 1
}

mvt_provision_libtorch() {
  if [ -n "${LIBTORCH:-}" ]; then
    if [ ! -d "$LIBTORCH/lib" ] || [ ! -d "$LIBTORCH/include" ]; then
      mvt_log "LIBTORCH=$LIBTORCH has no lib/ and include/ folders; unset it to install torch $MVT_TORCH_VERSION from PyPI"
      return 1
    fi
    mvt_log "using your LIBTORCH=$LIBTORCH"
    return 0
  fi
  local torch_dir version marker="$MVT_TORCH_VENV/.mvt-installed"
  torch_dir="$(mvt_torch_dir "$MVT_TORCH_VENV" || true)"
  version="$( [ -n "$torch_dir" ] && mvt_installed_version "$torch_dir" )"
  # The marker is written only after pip succeeded, so an interrupted install is redone.
  if [ "$version" != "$MVT_TORCH_VERSION" ] || [ "$(cat "$marker" 2>/dev/null)" != "$MVT_TORCH_VERSION" ]; then
    if [ -n "$version" ] && [ "$version" != "$MVT_TORCH_VERSION" ]; then
      mvt_log "found torch $version in $MVT_TORCH_VENV; need $MVT_TORCH_VERSION"
    fi
    mvt_install_torch || return 1
    torch_dir="$(mvt_torch_dir "$MVT_TORCH_VENV" || true)"
    version="$( [ -n "$torch_dir" ] && mvt_installed_version "$torch_dir" )"
    if [ "$version" != "$MVT_TORCH_VERSION" ]; then
      mvt_log "after installing, $MVT_TORCH_VENV holds torch '${version:-none}', not $MVT_TORCH_VERSION"
      return 1
    fi
    printf '%s\n' "$MVT_TORCH_VERSION" > "$marker"
  fi
  export LIBTORCH="$torch_dir"
  # The git-ignored link that .cargo/config.toml points torch-sys at, so plain `cargo` works too.
  ln -sfn "$torch_dir" "$MVT_ROOT/.libtorch"
}

mvt_provision_libtorch || return 1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MVT_CACHE/target}"
export MVT_TORCH_VENV
