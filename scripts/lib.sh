# Shared by the scripts: where downloads are cached, and pnpm on PATH.
# Sourced, not run.
KEYBRAKE_CACHE_DIR="${KEYBRAKE_CACHE_DIR:-$HOME/.cache/keybrake}"
export KEYBRAKE_CACHE_DIR
mkdir -p "$KEYBRAKE_CACHE_DIR/bin"
export PATH="$KEYBRAKE_CACHE_DIR/bin:$PATH"

PNPM_VERSION="$(node -p "require('./package.json').packageManager.split('@')[1]")"

# pnpm: Node 20's corepack fails pnpm's signature check, so install the pinned version with npm.
ensure_pnpm() {
  if command -v pnpm >/dev/null 2>&1 && [ "$(pnpm --version 2>/dev/null)" = "$PNPM_VERSION" ]; then
    return 0
  fi
  echo "installing pnpm@$PNPM_VERSION" >&2
  npm install -g --silent "pnpm@$PNPM_VERSION" >&2
}

# better-sqlite3 compiles from source when its prebuilt binary cannot be downloaded; node-gyp then
# needs Node's headers. Point it at the local ones rather than letting it download them.
if [ -z "${npm_config_nodedir:-}" ]; then
  for dir in "$(dirname "$(dirname "$(command -v node)")")" /usr /usr/local; do
    if [ -f "$dir/include/node/node_api.h" ]; then
      export npm_config_nodedir="$dir"
      break
    fi
  done
fi

# Workspace dependencies (better-sqlite3 compiles on first install when no prebuilt binary can be fetched).
ensure_deps() {
  ensure_pnpm
  pnpm install --frozen-lockfile --reporter=append-only >&2
}

# go_install_cached NAME MODULE VERSION: builds a Go command from the Go module proxy once into the
# cache and prints its path.
go_install_cached() {
  local name="$1" module="$2" version="$3"
  local target="$KEYBRAKE_CACHE_DIR/bin/$name-$version"
  if [ ! -x "$target" ]; then
    command -v go >/dev/null || { echo "$name needs Go (https://go.dev) to install" >&2; return 1; }
    echo "installing $name $version from the Go module proxy (once)" >&2
    local tmp
    tmp="$(mktemp -d)"
    GOBIN="$tmp" go install "$module@$version" >&2
    mv "$tmp/$(basename "$module")" "$target"
    rm -rf "$tmp"
  fi
  echo "$target"
}

# pip_install_cached NAME REQUIREMENT VERSION COMMAND: installs a Python tool from PyPI once into
# its own virtualenv in the cache and prints the path of its COMMAND.
pip_install_cached() {
  local name="$1" requirement="$2" version="$3" command="$4"
  local venv="$KEYBRAKE_CACHE_DIR/$name-$version"
  if [ ! -x "$venv/bin/$command" ]; then
    echo "installing $requirement==$version from PyPI (once)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q "$requirement==$version" >&2
  fi
  echo "$venv/bin/$command"
}
