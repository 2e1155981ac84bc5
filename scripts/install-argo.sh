#!/usr/bin/env bash
# Installs Argo Workflows' own CLI (`argo`) into the cache, once, and prints its path. CI uses it
# only for `argo lint --offline` over templates/argo/: it is an offline linter here, never a server.
#
# SECURITY: security flaws are reported for argo-workflows v4.0.5. Never run this binary as a
# server (`argo server`) or point it at a cluster; it lints YAML files on the CI machine and
# nothing else. The version is pinned so the lint is reproducible.
#
# Why not `go install github.com/argoproj/argo-workflows/v4/cmd/argo@v4.0.5`: `ui/embed.go` embeds
# `ui/dist/app`, which the module zip leaves out, so the build fails. As Argo's own Makefile does
# for CLI builds without the UI, this downloads the module from the Go module proxy, copies it to
# a writable folder in the cache, adds a placeholder `ui/dist/app/index.html`, and builds
# `./cmd/argo` there (a few minutes the first time; the Go build cache is shared).
#
# With --expr-test it instead builds (once per version of the test file) and prints the path of
# the Go test binary of integrations/argo/expr-test/keybrake_retry_test.go, compiled inside the
# controller package of that module copy: Argo's own controller evaluates our retry expressions.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ARGO_MODULE=github.com/argoproj/argo-workflows/v4
ARGO_VERSION="${ARGO_VERSION:-v4.0.5}"
source_dir="$KEYBRAKE_CACHE_DIR/argo-workflows-$ARGO_VERSION"
target="$KEYBRAKE_CACHE_DIR/bin/argo-$ARGO_VERSION"

ensure_source() {
  [ -f "$source_dir/.keybrake-complete" ] && return 0
  command -v go >/dev/null || { echo "the argo CLI needs Go (https://go.dev) to install" >&2; return 1; }
  echo "downloading $ARGO_MODULE@$ARGO_VERSION from the Go module proxy (once)" >&2
  local info module_dir tmp
  info="$(cd "$KEYBRAKE_CACHE_DIR" && GOFLAGS=-mod=mod go mod download -json "$ARGO_MODULE@$ARGO_VERSION")"
  module_dir="$(printf '%s' "$info" | node -e 'let s="";process.stdin.on("data",(c)=>(s+=c)).on("end",()=>{const j=JSON.parse(s);if(j.Error){console.error(j.Error);process.exit(1)}console.log(j.Dir)})')"
  # The module cache is read-only: copy it to a folder we may write into.
  tmp="$source_dir.tmp.$$"
  rm -rf "$tmp"
  cp -R "$module_dir" "$tmp"
  chmod -R u+w "$tmp"
  # The UI the CLI would embed is not in the module; the linter does not serve it.
  mkdir -p "$tmp/ui/dist/app"
  echo '<!-- placeholder: argo CLI built without the UI (scripts/install-argo.sh) -->' >"$tmp/ui/dist/app/index.html"
  touch "$tmp/.keybrake-complete"
  rm -rf "$source_dir"
  mv "$tmp" "$source_dir"
}

ensure_source
if [ "${1:-}" = "--expr-test" ]; then
  test_file=integrations/argo/expr-test/keybrake_retry_test.go
  test_hash="$(sha256sum "$test_file" | cut -c1-12)"
  test_bin="$KEYBRAKE_CACHE_DIR/bin/argo-controller-exprtest-$ARGO_VERSION-$test_hash"
  if [ ! -x "$test_bin" ]; then
    echo "building Argo's controller tests with $test_file (once, several minutes)" >&2
    cp "$test_file" "$source_dir/workflow/controller/keybrake_retry_test.go"
    (cd "$source_dir" && go test -c -o "$test_bin.tmp.$$" ./workflow/controller >&2)
    mv "$test_bin.tmp.$$" "$test_bin"
  fi
  echo "$test_bin"
  exit 0
fi
if [ ! -x "$target" ]; then
  echo "building the argo CLI $ARGO_VERSION (once, several minutes)" >&2
  (
    cd "$source_dir"
    go build -ldflags "-X $ARGO_MODULE.version=$ARGO_VERSION" -o "$target.tmp.$$" ./cmd/argo >&2
  )
  mv "$target.tmp.$$" "$target"
fi
echo "$target"
