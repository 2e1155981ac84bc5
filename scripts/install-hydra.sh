#!/usr/bin/env bash
# Installs ORY Hydra (OAuth2/OIDC server; the issue 25 tests get real JWT access tokens from
# `hydra serve all --dev` with DSN=memory) from the Go module proxy into the cache, once, and prints
# the binary's path. Hydra's go.mod has replace directives (pop -> ory/pop, its API client -> a folder
# of its own module), so `go install module@version` refuses it and a plain `go get -tool` builds
# against the wrong pop. So: a throwaway module that requires Hydra as a tool and copies Hydra's own
# replace directives (a relative one pointed into Hydra's folder in the module cache), built with the
# sqlite tag that DSN=memory needs. Slow the first time (many minutes on 2 cores); cached after that.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
version="${HYDRA_VERSION:-v2.3.0}"
target="$KEYBRAKE_CACHE_DIR/bin/hydra-$version"
if [ ! -x "$target" ]; then
  command -v go >/dev/null || { echo "hydra needs Go (https://go.dev) to install" >&2; exit 1; }
  echo "installing hydra $version from the Go module proxy (once)" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (
    cd "$tmp"
    go mod init keybrake.local/hydra-tool >&2
    dir="$(go mod download -json "github.com/ory/hydra/v2@$version" | node -e '
      let s = ""; process.stdin.on("data", (c) => (s += c)).on("end", () => console.log(JSON.parse(s).Dir));')"
    # Hydra's replace directives, as `old=new[@version]` lines.
    go mod edit -json "$dir/go.mod" | node -e '
      let s = "";
      process.stdin.on("data", (c) => (s += c)).on("end", () => {
        for (const r of JSON.parse(s).Replace ?? []) {
          // A folder with a go.mod of its own is a nested module, not in the module zip: the
          // published version of that module is required instead.
          if (!r.New.Version) continue;
          const to = `${r.New.Path}@${r.New.Version}`;
          console.log(`${r.Old.Path}${r.Old.Version ? `@${r.Old.Version}` : ""}=${to}`);
        }
      });' "$dir" | while read -r replace; do go mod edit -replace "$replace"; done
    go get -tool "github.com/ory/hydra/v2@$version" >&2
    CGO_ENABLED=1 go build -tags sqlite,sqlite_omit_load_extension -o "$tmp/hydra" github.com/ory/hydra/v2 >&2
  )
  mv "$tmp/hydra" "$target"
fi
echo "$target"
