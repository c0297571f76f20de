#!/usr/bin/env bash
# Install Node 22 and Bluesky's dev-env (PLC + PDS) for the end-to-end tests, into a cache outside the repo.
#
# Idempotent and non-interactive: a second run with the same node-version / package.json / package-lock.json
# does nothing. Override the location with LABELER_E2E_CACHE. Needs `npm` on PATH (any version >= 9) and a
# C/C++ toolchain (better-sqlite3 compiles against Node 22's headers).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${LABELER_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/atproto-hma-labeler/e2e}"
NODE_VERSION="$(tr -d '[:space:]' < "$HERE/node-version")"

case "$(uname -m)" in
  x86_64 | amd64) NODE_ARCH=x64 ;;
  aarch64 | arm64) NODE_ARCH=arm64 ;;
  *) echo "e2e install: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac
NODE_PKG="node-linux-${NODE_ARCH}"
NODE_PREFIX="$CACHE/node"
NODE_DIR="$NODE_PREFIX/node_modules/$NODE_PKG"
NODE_BIN="$NODE_DIR/bin/node"
APP="$CACHE/app"
STAMP="$APP/.installed"

say() { printf 'e2e install: %s\n' "$*" >&2; }

# Same key as harness.py's `install_key()`: what was installed, from which inputs.
KEY="$(cat "$HERE/node-version" "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1)"

if [[ -x "$NODE_BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
  say "up to date in $CACHE (node v$NODE_VERSION, key ${KEY:0:12})"
  exit 0
fi

command -v npm > /dev/null || { say "npm is required on PATH (e.g. apt-get install npm)"; exit 1; }
mkdir -p "$CACHE"
start=$SECONDS

# 1. Node itself, from the npm registry's official binary package.
if [[ -x "$NODE_BIN" && "$("$NODE_BIN" --version)" == "v$NODE_VERSION" ]]; then
  say "node v$NODE_VERSION already in $NODE_DIR"
else
  say "installing $NODE_PKG@$NODE_VERSION into $NODE_PREFIX ..."
  rm -rf "$NODE_PREFIX"
  mkdir -p "$NODE_PREFIX"
  npm install --prefix "$NODE_PREFIX" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
    "$NODE_PKG@$NODE_VERSION" >&2
  [[ "$("$NODE_BIN" --version)" == "v$NODE_VERSION" ]] || { say "node install failed"; exit 1; }
  say "node $("$NODE_BIN" --version) ready ($((SECONDS - start)) s)"
fi

# 2. The dev-env packages, exactly as locked. Built in a scratch folder and moved into place, so an
#    interrupted install never looks complete. npm runs under Node 22 (PATH), and node-gyp builds against
#    its headers (nodedir) instead of the machine's default node.
say "installing @atproto/dev-env (npm ci; compiles better-sqlite3, takes a few minutes) ..."
WORK="$CACHE/app.tmp.$$"
trap 'rm -rf "$WORK"' EXIT
rm -rf "$WORK"
mkdir -p "$WORK"
cp "$HERE/package.json" "$HERE/package-lock.json" "$WORK/"
(
  cd "$WORK"
  export PATH="$NODE_DIR/bin:$PATH"
  export npm_config_nodedir="$NODE_DIR"
  npm ci --no-audit --no-fund --loglevel=error --omit=dev >&2
)
"$NODE_BIN" --input-type=module -e "
  import { createRequire } from 'node:module'
  const require = createRequire('$WORK/package.json')
  require('better-sqlite3')(':memory:').close()
  await import(require.resolve('@atproto/dev-env'))
" >&2 || { say "the installed dev-env does not load under node v$NODE_VERSION"; exit 1; }

rm -rf "$APP"
mv "$WORK" "$APP"
trap - EXIT
printf '%s' "$KEY" > "$STAMP"
say "done in $((SECONDS - start)) s: $CACHE ($(du -sh "$CACHE" | cut -f1))"
