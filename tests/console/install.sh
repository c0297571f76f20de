#!/usr/bin/env bash
# The console's browser tests: Debian's chromium, driven by Playwright's Python package (the `test` extra) with
# executable_path=/usr/bin/chromium, so Playwright never downloads a browser.
#
# Idempotent. Installing Debian packages needs root: CI runs as root; elsewhere, without root, it says which
# command to run and exits 0 so the browser tests skip (under CI=true a missing part is an error).
set -euo pipefail

say() { printf 'console install: %s\n' "$*" >&2; }
fail_or_skip() {
  say "$*"
  if [[ "${CI:-}" == "true" ]]; then exit 1; fi
  say "the console's browser tests will skip"
  exit 0
}

if ! dpkg-query -W -f='${Status}' chromium 2> /dev/null | grep -q "install ok installed"; then
  command -v apt-get > /dev/null || fail_or_skip "no apt-get: install Chromium at /usr/bin/chromium"
  [[ "$(id -u)" == 0 ]] || fail_or_skip "needs root: sudo apt-get install -y chromium"
  say "apt-get install chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium > /dev/null
fi
say "ready: $(/usr/bin/chromium --version 2> /dev/null | head -1)"
