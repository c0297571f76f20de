"""Media beyond still images: streaming MD5 + SHA-256 of a large blob, vPDQ of 720p video, and jobs for a
realistic mix of image and video posts. Prints figures; asserts nothing about time.

    python bench/bench_media.py                          # all three parts
    python bench/bench_media.py --only digest --blob-mb 300
    python bench/bench_media.py --only vpdq --minutes 1 --runs 3
    python bench/bench_media.py --only mix --posts 150 --db postgres

- **digest**: a `--blob-mb` video blob fetched from a loopback PDS stand-in (its own process) with the pipeline's
  `BlobFetcher`: streamed to a temporary file while MD5 and SHA-256 are computed (the SHA-256 is the CID check).
  MB/s by wall clock and per CPU-second of this process, and peak RSS added (VmHWM after − RSS before), beside the
  floor: hashlib's MD5 + SHA-256 over the same bytes in memory. Targets: ≥ 300 MB/s, ≤ 64 MB added RSS.
- **vpdq**: `--minutes` of 720p30 H.264 (made with FFmpeg, about 3 Mbit/s) hashed by our `hash_video` (probe +
  vpdq, one hashing thread) and by python-threatexchange's `VPDQSignal.hash_from_file`, alternating, `--runs` each.
  Seconds of CPU (this process and its children: FFmpeg's decoder threads count) per minute of video. Target: ≥ 5×
  faster than real time at one frame per second, i.e. ≤ 12 CPU-seconds per minute.
- **mix**: `--posts` jobs through the whole pipeline (fetch → hash → match → label), one in 15 a video (`--video-s`
  seconds of 720p) and the rest 1–4 MP JPEG photos (bench/_photos.py); a third of each banked. Jobs/s and CPU per
  job of the labeler process (the hashing processes' CPU is in the machine's load, not in that figure).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import subprocess
import tempfile
import time
from pathlib import Path

try:
    from bench import _harness as h
    from bench import _photos
    from bench.bench_jobs import BENCH_ACCOUNT, _cid, blob_world
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness as h  # type: ignore[no-redef]
    import _photos  # type: ignore[no-redef]
    from bench_jobs import BENCH_ACCOUNT, _cid, blob_world  # type: ignore

import libipld

from labeler.identity import DidResolver
from labeler.pipeline.banks import EntryInput
from labeler.pipeline.fetcher import BlobFetcher
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.jobs import ImageRef, JobSpec
from labeler.pipeline.signals.video import VideoLimits, hash_video
from labeler.pipeline.signals.vpdq import to_signal

MB = 1_000_000


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (ffprobe, FFmpeg threads are ours already)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def ffmpeg_clip(path: Path, seconds: float, size: str = "1280x720") -> bytes:
    """A camera-like clip: a moving test pattern with grain, H.264 at about 3 Mbit/s, 30 frames/s."""
    if not path.exists():
        command = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi",
            "-i", f"testsrc2=size={size}:rate=30", "-t", str(seconds), "-vf", "noise=alls=12:allf=t",
            "-c:v", "libx264", "-preset", "veryfast", "-b:v", "3M", "-pix_fmt", "yuv420p", str(path),
        ]  # fmt: skip
        subprocess.run(command, check=True, timeout=1800)
    return path.read_bytes()


# --- digest ----------------------------------------------------------------------------------------------------


async def bench_digest(args: argparse.Namespace, workdir: Path) -> None:
    blob_dir = workdir / "blobs"
    blob_dir.mkdir(exist_ok=True)
    size = args.blob_mb * MB
    chunk = os.urandom(MB)
    cid = _write_blob(blob_dir, chunk, args.blob_mb)
    rows = []
    with blob_world(blob_dir) as (port, _):
        async with DidResolver(plc_url=f"http://127.0.0.1:{port}") as resolver:
            fetcher = BlobFetcher(
                resolver, max_bytes=MB, timeout=60, max_video_bytes=size, video_timeout=600, allow_private=True
            )
            try:
                for run in range(args.runs):
                    before = _rss_kb("VmRSS")
                    started, cpu = time.perf_counter(), time.process_time()
                    blob = await fetcher.fetch(ImageRef(BENCH_ACCOUNT, cid, "video/mp4", "video"))
                    elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
                    added = (_rss_kb("VmHWM") - before) / 1024
                    blob.discard()
                    rows.append([
                        f"fetch #{run + 1}", f"{size / MB / elapsed:.0f}", f"{size / MB / cpu_used:.0f}",
                        f"{added:.1f}" if run == 0 else "(see #1)",
                    ])  # fmt: skip
                    floor_started, floor_cpu = time.perf_counter(), time.process_time()
                    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
                    for _ in range(args.blob_mb):
                        md5.update(chunk)
                        sha.update(chunk)
                    floor_elapsed, floor_cpu_used = time.perf_counter() - floor_started, time.process_time() - floor_cpu
                    rows.append([
                        f"floor #{run + 1}: hashlib only", f"{size / MB / floor_elapsed:.0f}",
                        f"{size / MB / floor_cpu_used:.0f}", "-",
                    ])  # fmt: skip
            finally:
                await fetcher.aclose()
    h.print_table(
        f"streaming MD5 + SHA-256 of a {args.blob_mb} MB blob (loopback getBlob → temporary file)",
        ["run", "MB/s (wall)", "MB/s per CPU-second", "peak RSS added (MB)"],
        rows,
    )
    print("targets: ≥ 300 MB/s; ≤ 64 MB added RSS (the first fetch's; VmHWM only grows)")


def _write_blob(folder: Path, chunk: bytes, count: int) -> str:
    """`count` copies of `chunk` as one file named by its blob CID; the CID."""
    digest = hashlib.sha256()
    for _ in range(count):
        digest.update(chunk)
    cid = str(libipld.encode_cid(b"\x01\x55\x12\x20" + digest.digest()))
    with open(folder / cid, "wb") as out:
        for _ in range(count):
            out.write(chunk)
    return cid


# --- vpdq ------------------------------------------------------------------------------------------------------


def bench_vpdq(args: argparse.Namespace, workdir: Path) -> None:
    from threatexchange.extensions.vpdq.vpdq import VPDQSignal

    path = workdir / f"720p-{args.minutes:g}min.mp4"
    print(f"making {args.minutes:g} min of 720p30 with FFmpeg …", flush=True)
    ffmpeg_clip(path, args.minutes * 60)
    ours_signal = theirs_signal = ""
    rows = []
    for run in range(args.runs):
        for name, hasher in (
            ("ours: hash_video (probe + vpdq, 1 thread)", lambda: to_signal(hash_video(path, LIMITS).features)),
            ("pytx: VPDQSignal.hash_from_file", lambda: VPDQSignal.hash_from_file(path)),
        ):
            started, cpu = time.perf_counter(), _cpu()
            signal = hasher()
            elapsed, cpu_used = time.perf_counter() - started, _cpu() - cpu
            if name.startswith("ours"):
                ours_signal = signal
            else:
                theirs_signal = signal
            per_minute = cpu_used / args.minutes
            rows.append([run + 1, name, f"{elapsed:.1f}", f"{cpu_used:.1f}", f"{per_minute:.1f}",
                         f"{60 / per_minute:.1f}×"])  # fmt: skip
    h.print_table(
        f"vPDQ of {args.minutes:g} min of 720p30 H.264 (one frame per second)",
        ["run", "hasher", "wall s", "CPU s", "CPU s per minute of video", "× real time per core"],
        rows,
    )
    print(f"identical signals: {ours_signal == theirs_signal}; target ≤ 12 CPU s per minute (≥ 5× real time)")


LIMITS = VideoLimits(max_pixels=3840 * 2160, max_seconds=3600)


# --- mix -------------------------------------------------------------------------------------------------------


async def bench_mix(args: argparse.Namespace) -> None:
    videos = max(1, args.posts // 15)
    images = args.posts - videos
    print(f"making {images} JPEGs and {videos} videos of {args.video_s:g} s 720p …", flush=True)
    async with h.bench_env(args) as env:
        clip_dir = env.workdir / "clips"
        clip_dir.mkdir()
        photos = _photos.build(images)
        print(photos.describe(), flush=True)
        blobs: list[tuple[bytes, str]] = [(photo.data, "image") for photo in photos.photos]
        for n in range(videos):  # each video its own file: another test pattern phase, another MD5
            data = ffmpeg_clip(clip_dir / f"v{n}.mp4", args.video_s + n * 0.04)
            blobs.insert(n * 15, (data, "video"))
        blob_dir = env.workdir / "blobs"
        blob_dir.mkdir()
        for data, _ in blobs:
            (blob_dir / _cid(data)).write_bytes(data)
        banked = blobs[::3]
        specs = [
            JobSpec("manual", f"at://{BENCH_ACCOUNT}/app.bsky.feed.post/m{n}", None,
                    ImageRef(BENCH_ACCOUNT, _cid(data), None, media))
            for n, (data, media) in enumerate(blobs)
        ]  # fmt: skip
        with blob_world(blob_dir) as (port, _):
            settings = env.settings(
                plc_url=f"http://127.0.0.1:{port}",
                allow_private_fetch=True,
                workers=args.workers,
                max_image_bytes=50_000_000,
                extra={"pipeline": {"poll_seconds": 0.02, "hash_processes": args.processes}},
            )
            async with h.running_labeler(settings) as labeler:
                p = labeler.pipeline
                await p.banks.create("BENCH_IMAGES")
                pdqs = [EntryInput(hash_image(data).hash) for data, media in banked if media == "image"]
                await p.banks.add_entries("BENCH_IMAGES", pdqs)
                await p.banks.create("BENCH_VIDEOS", signal_type="vpdq")
                for data, media in banked:
                    if media == "video":
                        with tempfile.NamedTemporaryFile(dir=env.workdir) as f:
                            f.write(data)
                            f.flush()
                            signal = to_signal(hash_video(f.name, LIMITS).features)
                        await p.banks.add_entries("BENCH_VIDEOS", [EntryInput(signal)])
                await p.jobs.enqueue(specs)
                started, cpu = time.perf_counter(), time.process_time()
                await p.start(workers=args.workers)
                while True:
                    if (await p.jobs.counts())["done"] >= len(specs):
                        break
                    await asyncio.sleep(0.05)
                elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
                outcomes = await p.jobs.outcomes()
    summary = " ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
    h.print_table(
        f"a realistic mix: {images} image posts (1–4 MP JPEG) and {videos} video posts ({args.video_s:g} s 720p)",
        ["db", "workers", "hash procs", "jobs", "seconds", "jobs/s", "labeler CPU ms/job", "outcomes"],
        [[env.db, args.workers, args.processes, len(specs), f"{elapsed:.1f}", f"{len(specs) / elapsed:.2f}",
          f"{cpu_used / len(specs) * 1000:.1f}", summary]],
    )  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    h.print_machine(args)
    args.processes = args.processes or (os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="labeler-bench-media-") as tmp:
        workdir = args.workdir or Path(tmp)
        if args.only in (None, "digest"):
            await bench_digest(args, workdir)
        if args.only in (None, "vpdq"):
            bench_vpdq(args, workdir)
    if args.only in (None, "mix"):
        await bench_mix(args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_args(p)
    p.add_argument("--only", choices=("digest", "vpdq", "mix"), default=None, help="one part (default: all)")
    p.add_argument("--blob-mb", type=int, default=300, help="digest: blob size in MB (default %(default)s)")
    p.add_argument("--runs", type=int, default=2, help="digest, vpdq: runs (default %(default)s)")
    p.add_argument("--minutes", type=float, default=1.0, help="vpdq: minutes of 720p (default %(default)s)")
    p.add_argument("--posts", type=int, default=150, help="mix: jobs (default %(default)s)")
    p.add_argument("--video-s", type=float, default=20.0, help="mix: seconds per video (default %(default)s)")
    p.add_argument("--workers", type=int, default=4, help="mix: pipeline workers (default %(default)s)")
    p.add_argument("--processes", type=int, default=0, help="mix: hashing processes (default: one per CPU)")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
