#!/usr/bin/env bash
# Builds the core proxy of an earlier commit of this repository, once per commit id, and prints the
# folder it is in (its CLI is <folder>/core-proxy/dist/cli.js).
#
#   scripts/build-release.sh [--into <folder under the cache>] <commit-or-ref>
#
# The commit is exported with `git archive` (no worktree to register or prune) into
# $KEYBRAKE_CACHE_DIR/<folder>/<full commit id> (folder: `upgrade` unless --into says otherwise:
# `pnpm bench --against` uses `bench-against`), installed from its own lockfile (offline from the
# pnpm store first, online if the store lacks something) and built with its own TypeScript. A
# marker written last makes the next run print the folder and build nothing; a build cut short is
# built again. Runs for the same commit at once (two vitest projects) wait on one lock.
# Used by the upgrade tests (core-proxy/test/upgrade-*.test.ts, which build scripts/upgrade-releases.txt)
# and by bench/src/against.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
into=upgrade
if [ "${1:-}" = --into ]; then
  into="${2:?--into needs a folder name}"
  shift 2
fi
ref="${1:?usage: scripts/build-release.sh [--into <folder>] <commit-or-ref>}"
if ! commit="$(git rev-parse --verify --quiet "$ref^{commit}")"; then
  if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
    echo "build-release: this clone is shallow and has no commit $ref: run \`git fetch --unshallow\` (the upgrade tests build earlier releases from git history)" >&2
  else
    echo "build-release: no commit $ref in this clone (fetch it: \`git fetch origin\`; a shallow clone needs \`git fetch --unshallow\`)" >&2
  fi
  exit 1
fi
dir="$KEYBRAKE_CACHE_DIR/$into/$commit"
marker="$dir/.keybrake-built"
mkdir -p "$KEYBRAKE_CACHE_DIR/$into"
exec 9>"$dir.lock"
flock 9
# (`.keybrake-bench-built`: the marker of the git worktrees `pnpm bench --against` built before this script.)
if { [ -f "$marker" ] || [ -f "$dir/.keybrake-bench-built" ]; } && [ -f "$dir/core-proxy/dist/cli.js" ]; then
  echo "$dir"
  exit 0
fi
echo "build-release: exporting and building ${commit:0:7} in $dir (once)" >&2
rm -rf "$dir"
mkdir -p "$dir"
git archive --format=tar "$commit" | tar -x -C "$dir"
# Only what its core proxy needs (and the root's TypeScript to build it), from its own lockfile.
install=(pnpm install --frozen-lockfile --reporter=append-only --filter . --filter @keybrake/core-proxy)
(cd "$dir" && CI=1 "${install[@]}" --offline >&2) ||
  (echo "build-release: the pnpm store lacks some of ${commit:0:7}'s packages: installing online" >&2 &&
    cd "$dir" && CI=1 "${install[@]}" --prefer-offline >&2)
(cd "$dir" && pnpm exec tsc -b core-proxy >&2)
[ -f "$dir/core-proxy/dist/cli.js" ] || {
  echo "build-release: building ${commit:0:7} left no core-proxy/dist/cli.js" >&2
  exit 1
}
echo "$commit" >"$marker"
echo "$dir"
