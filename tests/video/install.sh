#!/usr/bin/env bash
# Video support for the tests (and a development checkout): FFmpeg's command-line tools (the tests make their videos
# with ffmpeg; the labeler probes with ffprobe), the libav* headers the `vpdq` package compiles against, then the
# project's `video` extra into the virtualenv.
#
# Idempotent. Installing Debian packages needs root: CI runs as root; elsewhere, without root, it says which
# command to run and exits 0 so the video tests skip (under CI=true a missing part is an error).
set -euo pipefail

PYTHON="${1:-.venv/bin/python}"
PACKAGES=(ffmpeg pkg-config cmake libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  libavfilter-dev libavdevice-dev)
say() { printf 'video install: %s\n' "$*" >&2; }
fail_or_skip() {
  say "$*"
  if [[ "${CI:-}" == "true" ]]; then exit 1; fi
  say "the video tests will skip"
  exit 0
}

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2> /dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  command -v apt-get > /dev/null || fail_or_skip "no apt-get: install FFmpeg and its development libraries (${missing[*]})"
  [[ "$(id -u)" == 0 ]] || fail_or_skip "needs root: sudo apt-get install -y ${missing[*]}"
  say "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
if ! "$PYTHON" -c "import vpdq" 2> /dev/null; then
  say "building vpdq against $(pkg-config --modversion libavcodec 2> /dev/null || echo '?') (libavcodec) ..."
  "$PYTHON" -m pip install --quiet -e '.[video]'
fi
say "ready: $(ffmpeg -version | head -1)"
