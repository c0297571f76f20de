"""A video file → its vPDQ hash, within limits, the way python-threatexchange's vPDQ signal computes it.

Two steps, both on FFmpeg's libraries as Debian ships them (the ones the `vpdq` package is built against):

1. **Probe** with `ffprobe` (`probe`): container, first video stream, codec, size, frame rate, duration, and the
   packets actually present (`-count_packets` reads the file without decoding it). Everything the limits need is
   known before a single frame is decoded, and it is exactly what `vpdq` will see: the same libavformat picks
   the same stream and frame rate. ffprobe runs as its own process with a CPU-time limit, and dies with its parent.
2. **Hash** with `vpdq.computeHash` (pytx's `VPDQSignal.hash_from_file` calls the same function with the same
   defaults, so the features are pytx's bit for bit). It decodes every frame and PDQ-hashes one every
   `seconds_per_hash` seconds; one hashing thread, so a process is one core and memory holds one frame at a time.

Why not PyAV: its wheels bring their own FFmpeg (8.x here), a second copy of the decoders with its own update
cadence, whose probe could disagree with what `vpdq` then decodes; Debian's libav* get the distribution's
security fixes, and decoders are the part that parses hostile bytes.

Wall time and memory are bounded by the process pool this runs in (a job over its time is killed, a child has an
address-space limit); this module bounds what can be known up front. Every failure is `VideoRejected` with a
stable reason; nothing else escapes.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import math
import os
import resource
import shutil
import signal
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

from labeler.pipeline.signals import (
    CORRUPT,
    TOO_MANY_PIXELS,
    TOO_MUCH_MEMORY,
    TOO_SLOW,
    TRUNCATED,
    UNSUPPORTED,
    MediaRejected,
)
from labeler.pipeline.signals.vpdq import VpdqFeature

FFPROBE: Final = "ffprobe"
# Containers FFmpeg may read our input as (ffprobe's format names); everything else is refused before decoding.
FORMATS: Final = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
# Codecs a web player shows (and Bluesky's video service takes); other decoders never see our input.
CODECS: Final = frozenset({"h264", "hevc", "vp8", "vp9", "av1"})
# vpdq's own floor (MIN_HASHABLE_DIM): a smaller frame cannot be PDQ-hashed.
MIN_SIDE: Final = 5
# Address space a hashing process needs for video (measured: ffprobe ~300 MiB to start, vpdq ~330 MiB at 720p and
# ~440 MiB at 2160p): the pool's limit must leave this much.
MIN_MEMORY_MB: Final = 512
PROBE_CPU_SECONDS: Final = 30

# Stable reason codes for VideoRejected, beside the ones shared with images (`labeler.pipeline.signals`).
EMPTY: Final = "empty"
NOT_A_VIDEO: Final = "not-a-video"
TOO_LONG: Final = "too-long"
TOO_MANY_FRAMES: Final = "too-many-frames"
CRASHED: Final = "crashed"  # from the process pool: decoding it killed the process
REASONS: Final = frozenset(
    {EMPTY, NOT_A_VIDEO, UNSUPPORTED, TRUNCATED, CORRUPT, TOO_MANY_PIXELS, TOO_LONG, TOO_MANY_FRAMES, TOO_SLOW,
     TOO_MUCH_MEMORY, CRASHED}
)  # fmt: skip


class VideoRejected(MediaRejected):
    """The file cannot be vPDQ-hashed; `reason` is one of REASONS, `detail` is for humans and logs."""


@dataclass(frozen=True, slots=True)
class VideoLimits:
    """What a video may cost before a frame is decoded: pixels per frame, seconds, and the sampling rate."""

    max_pixels: int = 3840 * 2160
    max_seconds: float = 600.0
    seconds_per_hash: float = 1.0  # vPDQ hashes one frame per this many seconds (pytx's default: 1)

    @property
    def max_frames(self) -> int:
        """Frames hashed at most: one per `seconds_per_hash` over `max_seconds`, and the first."""
        return math.floor(self.max_seconds / self.seconds_per_hash) + 1


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the probe found: the stream vPDQ hashes and how much of it there is."""

    container: str
    codec: str
    width: int
    height: int
    frame_rate: float  # as vpdq takes it: the average rate, else the base rate
    seconds: float
    frames: int  # packets present in the file (one frame each)

    def to_json(self) -> dict[str, Any]:
        return {
            "container": self.container, "codec": self.codec, "width": self.width, "height": self.height,
            "frame_rate": round(self.frame_rate, 3), "seconds": round(self.seconds, 3), "frames": self.frames,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class VideoHash:
    features: tuple[VpdqFeature, ...]
    info: VideoInfo


# ISO media files are videos unless their major brand says still image (HEIF, AVIF).
_IMAGE_BRANDS: Final = frozenset(
    {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
)
_EBML: Final = b"\x1a\x45\xdf\xa3"  # Matroska / WebM
SNIFF_BYTES: Final = 12


def looks_like_video(head: bytes) -> bool:
    """Whether a file starting with `head` (its first SNIFF_BYTES or more) is a video container we read: an ISO
    media file that is not a still image, or Matroska/WebM. For inputs with no record saying what they are."""
    if head.startswith(_EBML):
        return True
    return head[4:8] == b"ftyp" and head[8:12] not in _IMAGE_BRANDS


def support_problem(memory_mb: int | None = None) -> str | None:
    """Why videos cannot be vPDQ-hashed here (ffprobe or vpdq missing, or hashing processes allowed less than
    MIN_MEMORY_MB of address space), or None when they can."""
    if memory_mb is not None and memory_mb < MIN_MEMORY_MB:
        return f"LABELER_HASH_MEMORY_MB={memory_mb} is below the {MIN_MEMORY_MB} MiB a video needs"
    if shutil.which(FFPROBE) is None:
        return f"{FFPROBE} is not on PATH (Debian: apt-get install ffmpeg)"
    if importlib.util.find_spec("vpdq") is None:
        return "the vpdq package is not installed (the `video` extra: pip install 'atproto-hma-labeler[video]')"
    return None


def hash_video(path: str | Path, limits: VideoLimits) -> VideoHash:
    """Probe `path` within `limits`, then vPDQ-hash it. CPU-bound: run it in a process pool with a time limit."""
    problem = support_problem()
    if problem is not None:
        raise VideoRejected(UNSUPPORTED, f"video hashing is not installed here: {problem}")
    info = probe(path, limits)
    import vpdq  # the compiled module loads FFmpeg's libraries: only in processes that hash video

    try:
        raw = vpdq.computeHash(str(path), seconds_per_hash=limits.seconds_per_hash, thread_count=1)
    except Exception as e:  # vpdq raises a bare Exception("Fail to create VPDQ hash") for any decoding failure
        raise VideoRejected(CORRUPT, f"decoding failed: {e}") from e
    if not raw:
        raise VideoRejected(CORRUPT, "no frame could be decoded")
    if len(raw) > limits.max_frames:
        raise VideoRejected(TOO_MANY_FRAMES, f"{len(raw)} frames hashed > limit {limits.max_frames}")
    return VideoHash(tuple(VpdqFeature(f.hex, f.quality, f.timestamp) for f in raw), info)


def probe(path: str | Path, limits: VideoLimits) -> VideoInfo:
    """The first video stream of `path`, checked against `limits`; VideoRejected says why not."""
    if os.path.getsize(path) == 0:
        raise VideoRejected(EMPTY, "zero-length file")
    found = _ffprobe(path)
    container = str(found.get("format", {}).get("format_name", ""))
    streams = [s for s in found.get("streams", []) if s.get("codec_type") == "video"]
    if container not in FORMATS:
        reason = NOT_A_VIDEO if not streams or "pipe" in container or "image" in container else UNSUPPORTED
        raise VideoRejected(reason, f"container {container or 'unknown'!r} is not a video format we read")
    if not streams:
        raise VideoRejected(NOT_A_VIDEO, f"{container} file without a video stream")
    stream = streams[0]  # the stream vpdq hashes: the first video stream
    codec = str(stream.get("codec_name", ""))
    if codec not in CODECS:
        raise VideoRejected(UNSUPPORTED, f"codec {codec or 'unknown'!r} is not one we decode")
    width, height = _int(stream.get("width")), _int(stream.get("height"))
    if min(width, height) < MIN_SIDE:
        raise VideoRejected(CORRUPT, f"frame size {width}x{height} is below {MIN_SIDE} pixels")
    if width * height > limits.max_pixels:
        raise VideoRejected(TOO_MANY_PIXELS, f"{width}x{height} > limit {limits.max_pixels} pixels")
    frame_rate = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    if frame_rate <= 0:
        raise VideoRejected(CORRUPT, "no frame rate")
    frames = _int(stream.get("nb_read_packets"))
    declared = _int(stream.get("nb_frames"))
    if frames == 0:
        raise VideoRejected(CORRUPT, "no video frames")
    if declared > frames:
        raise VideoRejected(TRUNCATED, f"{frames} of {declared} frames present")
    seconds = max(_float(found.get("format", {}).get("duration")), _float(stream.get("duration")))
    if seconds > limits.max_seconds:
        raise VideoRejected(TOO_LONG, f"{seconds:.0f} s > limit {limits.max_seconds:g} s")
    # vpdq hashes every `int(seconds_per_hash × frame rate)`-th frame (at least every frame): a rate that lies
    # cannot make it hash more frames than the limit allows.
    every = max(1, int(limits.seconds_per_hash * frame_rate))
    sampled = math.ceil(frames / every)
    if sampled > limits.max_frames:
        raise VideoRejected(TOO_MANY_FRAMES, f"{sampled} frames to hash > limit {limits.max_frames}")
    return VideoInfo(container, codec, width, height, frame_rate, seconds, frames)


def _ffprobe(path: str | Path) -> dict[str, Any]:
    command = [
        FFPROBE, "-v", "error", "-print_format", "json", "-count_packets", "-show_format", "-show_streams",
        "-select_streams", "v", "-i", str(path),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            timeout=PROBE_CPU_SECONDS * 2,
            preexec_fn=_bounded_child,  # the hashing process is single-threaded while it probes
            check=False,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
    except subprocess.TimeoutExpired as e:
        raise VideoRejected(CORRUPT, f"probing took over {PROBE_CPU_SECONDS * 2} s") from e
    except OSError as e:  # ffprobe missing or not runnable: a deployment problem, said for every video
        raise VideoRejected(UNSUPPORTED, f"cannot run {FFPROBE}: {e}") from e
    errors = done.stderr.decode("utf-8", "replace").replace(str(path), "<video>").strip()
    if done.returncode != 0:
        raise _classify_failure(path, errors)
    try:
        found = json.loads(done.stdout)
    except ValueError as e:
        raise VideoRejected(CORRUPT, f"ffprobe answered something else than JSON: {errors[:200]}") from e
    if not isinstance(found, dict):
        raise VideoRejected(CORRUPT, "ffprobe answered no object")
    if "partial file" in errors:
        raise VideoRejected(TRUNCATED, errors.splitlines()[-1][:300])
    return found


def _classify_failure(path: str | Path, errors: str) -> VideoRejected:
    last = errors.splitlines()[-1][:300] if errors else "ffprobe failed"
    if "error while loading shared libraries" in errors:
        # ffprobe inherits the hashing process's address-space limit and needs ~300 MiB of it just to start.
        return VideoRejected(TOO_MUCH_MEMORY, f"ffprobe could not start within the memory limit: {last}")
    if "moov atom not found" in errors:
        with open(path, "rb") as f:
            head = f.read(12)
        # An ISO media file (an `ftyp` box first) whose index never came: cut off before its end.
        return VideoRejected(TRUNCATED if head[4:8] == b"ftyp" else NOT_A_VIDEO, last)
    if "Invalid data found" in errors:
        return VideoRejected(NOT_A_VIDEO, last)
    return VideoRejected(CORRUPT, last)


def _bounded_child() -> None:
    """In ffprobe's process before it starts: a CPU-time limit, and death when the hashing process dies
    (a pool that kills a job over its time must not leave ffprobe running)."""
    resource.setrlimit(resource.RLIMIT_CPU, (PROBE_CPU_SECONDS, PROBE_CPU_SECONDS))
    _PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) and number > 0 else 0.0


def _rate(value: Any) -> float:
    """`30000/1001` → 29.97; 0 for `0/0`, garbage or a negative rate."""
    try:
        rate = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(rate) if rate > 0 else 0.0
