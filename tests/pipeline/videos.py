"""Test videos, made with FFmpeg when a test asks for them (lavfi sources: nothing downloaded, nothing committed).

`video(...)` encodes one clip and caches it for the session. `hostile_corpus()` builds the hostile-video corpus:
files a labeler must refuse (empty, not a video, truncated, wrong container or codec, enormous frames, hours
long, images posing as videos), each with the reasons it may be refused for.

Tests that need FFmpeg, ffprobe and vpdq call `require_video_tools()`: without them they skip with the command
that installs them, and under CI=true they fail.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import io
import os
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from .corpus import encode, structured_rgb

IN_CI = os.environ.get("CI") == "true"
INSTALL_HINT = "make video-deps (or: bash tests/video/install.sh .venv/bin/python, as root)"


def video_tools_problem() -> str | None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    if importlib.util.find_spec("vpdq") is None:
        return "the vpdq package is not installed"
    return None


def require_video_tools() -> None:
    problem = video_tools_problem()
    if problem is None:
        return
    message = f"video tools unavailable: {problem}. Install with: {INSTALL_HINT}"
    if IN_CI:
        pytest.fail(message + " (CI=true requires them)", pytrace=False)
    pytest.skip(message)


@functools.cache
def _cache_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="labeler-test-videos-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def cached(name: str) -> Path:
    """Where the session keeps the file called `name` (made by `ffmpeg`, `video` or `saved`)."""
    return _cache_dir() / name


def saved(name: str, data: bytes) -> Path:
    """`data` as a file of the session's cache (hashers read videos from files)."""
    path = cached(name)
    path.write_bytes(data)
    return path


def ffmpeg(name: str, *args: str) -> Path:
    """Run `ffmpeg [args] <cache>/name` once per session; the file's path."""
    out = _cache_dir() / name
    if not out.exists():
        command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args, str(out)]
        subprocess.run(command, check=True, capture_output=True, timeout=300)
    return out


def video(
    name: str,
    *,
    seconds: float = 4,
    size: str = "320x240",
    rate: str = "30",
    source: str = "testsrc2",
    codec: str = "libx264",
    extra: tuple[str, ...] = (),
) -> bytes:
    """A clip from an FFmpeg test source (`testsrc2`, `mandelbrot`, `smptehdbars`, …), encoded with `codec`;
    `name`'s extension picks the container."""
    source_args = f"{source}=size={size}:rate={rate}"
    codec_args = ("-c:v", codec, "-pix_fmt", "yuv420p") if codec.startswith("lib") else ("-c:v", codec)
    path = ffmpeg(name, "-f", "lavfi", "-i", source_args, "-t", str(seconds), *codec_args, *extra)
    return path.read_bytes()


def reencoded(name: str, original: str, *args: str) -> bytes:
    """`original` (a cached clip's name) encoded again with other settings: another file, the same pictures."""
    return ffmpeg(name, "-i", str(_cache_dir() / original), *args).read_bytes()


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    reasons: frozenset[str]  # the reasons it may be refused for


def hostile_corpus() -> list[Hostile]:
    """At least 50 files a labeler must refuse as videos, built from FFmpeg, Pillow and byte surgery."""
    good = video("hostile-base.mp4", seconds=3, extra=("-movflags", "+faststart"))
    tail_index = video("hostile-tail-moov.mp4", seconds=3)  # moov after mdat, as a camera writes it
    rng = random.Random(19)
    files: list[Hostile] = []

    def add(name: str, data: bytes, *reasons: str) -> None:
        files.append(Hostile(name, data, frozenset(reasons)))

    add("zero-length", b"", "empty")
    for size in (1, 7, 100, 4096, 100_000):
        add(f"random-{size}", rng.randbytes(size), "not-a-video", "corrupt")
    add("text", b"definitely not a video\n" * 100, "not-a-video")
    add("html", b"<!doctype html><html><body>" + b"x" * 5000 + b"</body></html>", "not-a-video")
    add("json", b'{"video": "' + b"A" * 5000 + b'"}', "not-a-video")
    picture = structured_rgb(320, 240, seed=9)
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"):
        add(f"image-{fmt.lower()}", encode(picture, fmt), "not-a-video", "unsupported")
    frames = [structured_rgb(64, 48, seed=s) for s in range(6)]
    animated = io.BytesIO()
    frames[0].save(animated, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    add("image-animated-gif", animated.getvalue(), "not-a-video", "unsupported")
    # Truncated: an index up front with its media cut off, and an index that never came.
    for fraction in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        add(f"truncated-faststart-{fraction}", good[: int(len(good) * fraction)], "truncated")
    for fraction in (0.05, 0.5, 0.95):
        add(f"truncated-no-index-{fraction}", tail_index[: int(len(tail_index) * fraction)], "truncated")
    add("ftyp-box-only", good[:32], "truncated", "not-a-video")
    add("header-without-media", good[: good.find(b"mdat") + 8], "truncated")
    # Containers and codecs outside the allow-lists: refused before any decoder sees them.
    for name, codec, extra in (
        ("mpeg2.mp4", "mpeg2video", ()),
        ("mpeg4-part2.mp4", "mpeg4", ()),
        ("mjpeg.mov", "mjpeg", ()),
        ("prores.mov", "prores", ()),
        ("ffv1.mkv", "ffv1", ()),
        ("gif-codec.mkv", "gif", ()),
        ("rawvideo.mkv", "rawvideo", ()),
        ("h264.avi", "libx264", ()),
        ("h264.flv", "libx264", ()),
        ("h264.ts", "libx264", ()),
        ("mpeg1.mpg", "mpeg1video", ()),
        ("theora.ogv", "libtheora", ()),
        ("vp8.avi", "libvpx", ()),
    ):
        add(f"format-{name}", video(f"hostile-{name}", seconds=1, codec=codec, extra=extra), "unsupported")
    audio = ffmpeg("hostile-audio-only.m4a", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac")
    add("audio-only-mp4", audio.read_bytes(), "not-a-video")
    add("audio-only-mp4-named-video", audio.read_bytes(), "not-a-video")
    # Enormous frames: more pixels than the limit (the tests' limit is 1920x1080).
    for size in ("2048x2048", "3840x2160", "4096x1200", "8192x320"):
        name = f"huge-{size}.mp4"
        fast = ("-preset", "ultrafast")
        data = video(f"hostile-{name}", seconds=0.1, size=size, rate="10", source="color", extra=fast)
        add(name, data, "too-many-pixels")
    # Hours long: few real frames, timestamps stretched (an hour and more, by the container's own account).
    for hours in (1, 5, 24):  # two frames, one second apart, then `hours` hours apart
        stretch = ("-vf", f"setpts={hours * 3600}*PTS", "-r", f"1/{hours * 3600}")
        data = video(f"hostile-{hours}h.mp4", seconds=2, rate="1", extra=stretch)
        add(f"long-{hours}h", data, "too-long")
    add("long-4h-webm", video("hostile-4h.webm", seconds=2, rate="1", codec="libvpx-vp9", extra=(
        "-vf", "setpts=7200*PTS", "-r", "1/7200")), "too-long")  # fmt: skip
    # Too small to hash (vpdq's floor is 5 pixels a side).
    add("tiny-4x4", video("hostile-4x4.mp4", seconds=1, size="4x4", source="color"), "corrupt")
    # Byte surgery on a good file: its index damaged.
    moov = good.find(b"moov")
    for offset in (8, 120, 400):
        damaged = bytearray(good)
        damaged[moov + offset : moov + offset + 16] = b"\xff" * 16
        add(f"moov-damaged-{offset}", bytes(damaged), "corrupt", "truncated", "not-a-video", "unsupported")
    add("moov-renamed", good.replace(b"moov", b"mooz", 1), "truncated", "not-a-video")
    return files
