"""Video signals: our vPDQ equals python-threatexchange's (hashes and matching), limits hold before decoding, and
the hostile-video corpus is refused with reasons while the hashing processes live on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from labeler.pipeline.hashing import HashPool
from labeler.pipeline.match.vpdq_index import VpdqIndex
from labeler.pipeline.procpool.pool import Limits
from labeler.pipeline.signals.video import (
    REASONS,
    VideoLimits,
    VideoRejected,
    hash_video,
    looks_like_video,
    probe,
    support_problem,
)
from labeler.pipeline.signals.vpdq import Thresholds, VpdqFeature, parse_signal, signal_key, to_signal

from .corpus import encode, structured_rgb
from .videos import cached, ffmpeg, hostile_corpus, reencoded, require_video_tools, saved, video

LIMITS = VideoLimits(max_pixels=1920 * 1080, max_seconds=600)


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_video_tools()


def corpus() -> dict[str, Path]:
    """Short clips across containers, codecs, sizes and frame rates (made once per session)."""
    clips = {
        "testsrc2.mp4": dict(seconds=5),
        "mandelbrot-640x360.mp4": dict(source="mandelbrot", size="640x360", extra=("-movflags", "+faststart")),
        "smpte-1280x720-29.97.mp4": dict(source="smptehdbars", size="1280x720", rate="30000/1001", seconds=3),
        "odd-size-322x182.mp4": dict(size="322x182", seconds=3),
        "two-fps.mp4": dict(rate="2", seconds=6),
        "vp9.webm": dict(codec="libvpx-vp9", seconds=3),
        "hevc.mp4": dict(codec="libx265", seconds=3, extra=("-tag:v", "hvc1")),
        "life.mkv": dict(source="life", size="320x240", seconds=4),
    }
    paths = {}
    for name, options in clips.items():
        video(f"corpus-{name}", **options)  # type: ignore[arg-type]
        paths[name] = ffmpeg(f"corpus-{name}")
    with_audio = ffmpeg(
        "corpus-with-audio.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi",
        "-i", "sine=frequency=300", "-t", "3", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
    )  # fmt: skip
    return paths | {"with-audio.mp4": with_audio}


def test_our_vpdq_equals_python_threatexchanges() -> None:
    from threatexchange.extensions.vpdq.vpdq import VPDQSignal
    from threatexchange.extensions.vpdq.vpdq_util import hash_file_compact

    for name, path in corpus().items():
        ours = hash_video(path, LIMITS)
        theirs = hash_file_compact(str(path))
        assert [(f.hex, f.quality, f.timestamp) for f in ours.features] == [
            (f.pdq_hex, f.quality, f.timestamp) for f in theirs
        ], name
        assert to_signal(ours.features) == VPDQSignal.hash_from_file(path), name
        assert len(ours.features) == pytest.approx(ours.info.seconds, abs=1.5), name  # one frame a second
        assert ours.info.codec in ("h264", "vp9", "hevc") and ours.info.frames > 0, name


@pytest.mark.parametrize(
    "thresholds", [Thresholds(), Thresholds(query_percent=50, compared_percent=50), Thresholds(query_percent=100)]
)
def test_video_matching_equals_python_threatexchanges_index(thresholds: Thresholds) -> None:
    from threatexchange.extensions.vpdq.vpdq_index import VPDQIndex

    banked = {
        "A": video("match-a.mp4", seconds=8),
        "B": video("match-b.mp4", source="mandelbrot", seconds=6),
        "C": video("match-c.mp4", source="smptebars", seconds=5),
    }
    reencoded("q-a-crf.mp4", "match-a.mp4", "-c:v", "libx264", "-crf", "32")
    reencoded("q-a-small.mp4", "match-a.mp4", "-vf", "scale=160:120")
    reencoded("q-a-half.mp4", "match-a.mp4", "-t", "4")
    reencoded("q-b.webm", "match-b.mp4", "-c:v", "libvpx-vp9")
    video("q-life.mp4", source="life", seconds=5)
    queries = {
        "A itself": cached("match-a.mp4"),
        "A re-encoded": cached("q-a-crf.mp4"),
        "A scaled": cached("q-a-small.mp4"),
        "A first half": cached("q-a-half.mp4"),
        "B as webm": cached("q-b.webm"),
        "unrelated": cached("q-life.mp4"),
    }
    assert all(banked.values())
    ours, theirs = (
        VpdqIndex(thresholds),
        VPDQIndex(thresholds.quality, thresholds.query_percent, thresholds.compared_percent),
    )
    for name in banked:
        features = hash_video(cached(f"match-{name.lower()}.mp4"), LIMITS).features
        ours.add_many([(features, "BANK", name, None, None)])
        theirs.add(to_signal(features), name)
    found_any = set()
    for query, path in queries.items():
        features = hash_video(path, LIMITS).features
        got = {
            (m.entry_id, round(m.similarity.query_percent, 6), round(m.similarity.compared_percent, 6))
            for m in ours.query(features)
            if m.similarity is not None
        }
        want = {
            (m.metadata, round(m.similarity_info.query_match_percent, 6),
             round(m.similarity_info.compared_match_percent, 6))
            for m in theirs.query(to_signal(features))
        }  # fmt: skip
        assert got == want, query
        found_any |= {entry for entry, _, _ in got}
    assert {"A", "B"} <= found_any


def test_a_vpdq_match_has_a_frame_distance_policy_can_use() -> None:
    video("match-a.mp4", seconds=8)
    original = hash_video(cached("match-a.mp4"), LIMITS).features
    index = VpdqIndex()
    index.add_many([(original, "BANK", "A", "ext-a", None)])
    [same] = index.query(original)
    assert (same.distance, same.signal_type, same.external_id) == (0, "vpdq", "ext-a")
    assert same.similarity is not None and same.similarity.query_percent == 100
    reencoded("q-a-blur.mp4", "match-a.mp4", "-vf", "gblur=sigma=3", "-c:v", "libx264", "-crf", "30")
    [near] = index.query(hash_video(cached("q-a-blur.mp4"), LIMITS).features)
    assert 0 < near.distance <= 31  # the frame distance at which ≥ 80 % of the query's frames still match


def test_signal_strings_round_trip_and_malformed_ones_are_refused() -> None:
    features = (VpdqFeature("a" * 64, 100, 0.0), VpdqFeature("b" * 64, 49, 1.0), VpdqFeature("c" * 64, 90, 123.4))
    signal = to_signal(features)
    assert json.loads(signal) == [f"{'a' * 64},100,0.0", f"{'b' * 64},49,1.0", f"{'c' * 64},90,1.23e+02"]
    assert parse_signal(signal) == (features[0], features[1], VpdqFeature("c" * 64, 90, 123.0))
    assert parse_signal(json.loads(signal)) == parse_signal(signal)
    assert signal_key(parse_signal(signal.upper().replace("E+", "e+"))) == signal_key(parse_signal(signal))
    for bad in ("", "[]", "{}", '["x,1,2"]', f'["{"a" * 64},101,0"]', f'["{"a" * 64},90,-1"]',
                f'["{"a" * 64},90,nan"]', f'["{"a" * 64},90"]', "[1]", "not json", "[" * 100_000):  # fmt: skip
        with pytest.raises(ValueError):
            parse_signal(bad)


def test_limits_are_known_before_a_frame_is_decoded() -> None:
    path = ffmpeg("limits.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-t", "20", "-c:v", "libx264")
    info = probe(path, LIMITS)
    assert (info.width, info.height, info.frames, round(info.seconds), info.frame_rate) == (640, 360, 600, 20, 30.0)
    for limits, reason in (
        (VideoLimits(max_pixels=640 * 359), "too-many-pixels"),
        (VideoLimits(max_seconds=19), "too-long"),
        # At 30 frames/s, sampling every 0.04 s hashes every frame: 600 > the 501 that 20 s allows at that rate.
        (VideoLimits(max_seconds=20, seconds_per_hash=0.04), "too-many-frames"),
    ):
        with pytest.raises(VideoRejected) as caught:
            probe(path, limits)
        assert caught.value.reason == reason
    # Every third frame (0.1 s): 200 frames, within the 201 allowed.
    assert probe(path, VideoLimits(max_seconds=20, seconds_per_hash=0.1)).frames == 600


def test_videos_are_told_from_images_by_their_first_bytes() -> None:
    assert looks_like_video(video("sniff.mp4", seconds=1)[:12])
    assert looks_like_video(video("sniff.webm", seconds=1, codec="libvpx-vp9")[:12])
    assert not looks_like_video(encode(structured_rgb(32, 32), "PNG")[:12])
    assert not looks_like_video(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00")  # an AVIF still image
    assert not looks_like_video(b"\x00\x00\x00\x18ftypheic")
    assert not looks_like_video(b"")


async def test_the_hostile_corpus_is_refused_and_the_hashing_processes_live_on() -> None:
    corpus = hostile_corpus()
    assert len(corpus) >= 50
    pool = HashPool(
        processes=2, limits=Limits(timeout=30, memory_bytes=1 << 30), max_bytes=1 << 20, max_pixels=1 << 20,
        max_jpeg_scans=100, video=LIMITS, video_timeout=60,
    )  # fmt: skip
    try:
        await pool.start()
        started = set(pool.pool.pids)
        outcomes = {}
        for item in corpus:
            path = saved(f"hostile-file-{hashlib.sha256(item.name.encode()).hexdigest()[:12]}", item.data)
            with pytest.raises(VideoRejected) as caught:
                await pool.hash_video(path)
            outcomes[item.name] = caught.value.reason
            assert caught.value.reason in item.reasons, (item.name, str(caught.value))
        assert set(outcomes.values()) <= REASONS
        # Every kind of refusal is in the corpus, and the same processes hash a good video afterwards.
        assert set(outcomes.values()) >= {"empty", "not-a-video", "truncated", "unsupported", "too-many-pixels",
                                          "too-long", "corrupt"}  # fmt: skip
        assert set(pool.pool.pids) == started  # refused without a process dying or being replaced
        assert max(peak_rss_mb(pid) for pid in started) < 400  # nothing was decoded that should not have been
        video("after-the-corpus.mp4", seconds=5)
        good = await pool.hash_video(cached("after-the-corpus.mp4"))
        assert len(good.features) == 5
    finally:
        await pool.aclose()


async def test_a_video_past_its_time_or_memory_is_cut_off_and_its_process_replaced() -> None:
    """A video that passes every check made before decoding can still cost too much to decode: the pool's limits
    (wall time per video, address space per process) end it as a rejected video, and a fresh process carries on."""
    long_clip = ffmpeg("slow.mp4", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", "60",
                       "-c:v", "libx264", "-preset", "ultrafast")  # fmt: skip
    big_frames = ffmpeg("big-frames.mp4", "-f", "lavfi", "-i", "testsrc2=size=3840x2160:rate=30", "-t", "2",
                        "-c:v", "libx264", "-preset", "ultrafast")  # fmt: skip
    video("afterwards.mp4", seconds=3)
    for memory_mb, clip, video_timeout, reasons in (
        (1024, long_clip, 0.5, {"too-slow"}),
        # 400 MiB of address space: ffprobe starts (~300), but decoding 4K frames needs ~440 (vpdq's C++ aborts
        # on the refused allocation, killing its process).
        (400, big_frames, 60, {"too-much-memory", "corrupt", "crashed"}),
    ):
        pool = HashPool(
            processes=1, limits=Limits(timeout=30, memory_bytes=memory_mb << 20), max_bytes=1 << 20,
            max_pixels=1 << 20, max_jpeg_scans=100, video=LIMITS_4K, video_timeout=video_timeout,
        )  # fmt: skip
        try:
            await pool.start()
            with pytest.raises(VideoRejected) as caught:
                await pool.hash_video(clip)
            assert caught.value.reason in reasons, str(caught.value)
            pool.video_timeout = 60
            assert len((await pool.hash_video(cached("afterwards.mp4"))).features) == 3
        finally:
            await pool.aclose()
    # Below MIN_MEMORY_MB not even ffprobe starts: said as a memory limit, not as a broken video.
    pool = HashPool(
        processes=1, limits=Limits(timeout=30, memory_bytes=256 << 20), max_bytes=1 << 20, max_pixels=1 << 20,
        max_jpeg_scans=100, video=LIMITS_4K,
    )  # fmt: skip
    try:
        with pytest.raises(VideoRejected) as caught:
            await pool.hash_video(cached("afterwards.mp4"))
        assert caught.value.reason == "too-much-memory"
        assert support_problem(256) is not None and "LABELER_HASH_MEMORY_MB=256" in (support_problem(256) or "")
    finally:
        await pool.aclose()


LIMITS_4K = VideoLimits(max_pixels=3840 * 2160, max_seconds=600)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")
