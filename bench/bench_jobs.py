"""Image jobs end to end: enqueue → claim → resolve DID → getBlob over HTTP → verify CID → decode + PDQ (hashing
processes) → embedded match → policy → signed label, with a local PLC + PDS stand-in in a separate process.

The images are 1–4 MP JPEG photos (bench/_photos.py) and half of them are in an embedded bank, so half the jobs
write a label. Runs alternate between the hashing modes given (`--modes reduced,exact`: LABELER_REDUCED_DECODE
true / false) for `--rounds` rounds. Prints jobs/s (wall clock, from the first claim to the last outcome), the CPU
per job of the labeler process and of its hashing processes (read from /proc), and the outcome counts. The PDS
stand-in and PostgreSQL share the machine but are not counted. Asserts nothing about time.

    python bench/bench_jobs.py --db postgres           # 300 photos, 2 workers, reduced and exact, 2 rounds
    python bench/bench_jobs.py --jobs 600 --workers 2,4 --modes reduced --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import multiprocessing
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

try:
    from bench import _harness as h
    from bench import _photos
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness as h  # type: ignore[no-redef]
    import _photos  # type: ignore[no-redef]

import libipld

from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.jobs import ImageRef, JobSpec

BENCH_ACCOUNT = "did:plc:benchpostsbenchpostsbenc"


def _cid(data: bytes) -> str:
    return str(libipld.encode_cid(b"\x01\x55\x12\x20" + hashlib.sha256(data).digest()))


def _serve_world(port: int, blob_dir: str) -> None:
    """PLC (`GET /<did>`) and PDS (`getBlob`) in one app, in its own process."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    blobs = {p.name: p.read_bytes() for p in Path(blob_dir).iterdir()}
    document = {
        "id": BENCH_ACCOUNT,
        "alsoKnownAs": ["at://bench.test"],
        "verificationMethod": [],
        "service": [
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": f"http://127.0.0.1:{port}"}
        ],
    }

    async def get_blob(request: Request) -> Response:
        data = blobs.get(request.query_params.get("cid", ""))
        if data is None:
            return JSONResponse({"error": "BlobNotFound"}, status_code=400)
        return Response(data, media_type="image/jpeg")

    async def did_doc(request: Request) -> Response:
        return JSONResponse(document)

    app = Starlette(routes=[Route("/xrpc/com.atproto.sync.getBlob", get_blob), Route("/{did:path}", did_doc)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the PLC/PDS stand-in did not start")


@contextlib.contextmanager
def blob_world(blob_dir: Path, blobs: Iterable[bytes] = ()) -> Iterator[tuple[int, int]]:
    """The PLC + PDS stand-in in its own process, serving every file of `blob_dir` by its CID (`blobs` are written
    there first): its port and pid."""
    blob_dir.mkdir(exist_ok=True)
    for data in blobs:
        (blob_dir / _cid(data)).write_bytes(data)
    port = _free_port()
    process = multiprocessing.get_context("spawn").Process(target=_serve_world, args=(port, str(blob_dir)), daemon=True)
    process.start()
    try:
        _wait_for_port(port)
        yield port, process.pid or 0
    finally:
        process.terminate()
        process.join(5)


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of live processes (the hashing processes), from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


async def run_once(
    env: h.BenchEnv, args: argparse.Namespace, workers: int, mode: str, run: int, port: int
) -> list[Any]:
    images: list[bytes] = args.images
    settings = env.settings(
        plc_url=f"http://127.0.0.1:{port}",
        allow_private_fetch=True,
        workers=workers,
        max_image_bytes=50_000_000,
        reduced_decode=mode == "reduced",
        extra={"pipeline": {"poll_seconds": 0.02, **({"hash_processes": args.processes} if args.processes else {})}},
    )
    specs = [
        JobSpec("manual", f"at://{BENCH_ACCOUNT}/app.bsky.feed.post/r{run}x{n}", None, ImageRef(BENCH_ACCOUNT, _cid(d)))
        for n, d in enumerate(images)
    ]
    async with h.running_labeler(settings) as labeler:
        p = labeler.pipeline
        if run == 0:
            await p.banks.create("BENCH")
            await p.banks.add_entries("BENCH", [EntryInput(pdq) for pdq in args.banked])
        await p.hasher.start(p.options.processes_for(workers))  # as start(workers=…) would, before timing
        await p.hasher.hash(images[0])
        await p.matcher.lookup(args.banked[0])
        await p.jobs.enqueue(specs)
        pids = p.hasher.pool.pids
        started, cpu, hashing_cpu = time.perf_counter(), time.process_time(), _cpu_seconds(pids)
        await p.start(workers=workers)
        while True:  # done counts are cumulative over runs (one database)
            if (await p.jobs.counts())["done"] >= len(specs) * (run + 1):
                break
            await asyncio.sleep(0.02)
        elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
        hashing_used = _cpu_seconds(pids) - hashing_cpu
        outcomes = await p.jobs.outcomes()
    per_job = 1000 / len(specs)
    summary = " ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
    return [
        env.db, mode, workers, len(pids), len(specs), f"{elapsed:.2f}", f"{len(specs) / elapsed:.1f}",
        f"{cpu_used * per_job:.1f}", f"{hashing_used * per_job:.1f}", summary,
    ]  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    h.print_machine(args)
    print(f"building {args.jobs} photos …", flush=True)
    corpus = _photos.build(args.jobs)
    print(f"corpus: {corpus.describe()}", flush=True)
    args.images = [photo.data for photo in corpus.photos]
    args.banked = [hash_image(d, reduced_decode=True).hash for d in args.images[::2]]
    rows: list[list[Any]] = []
    async with h.bench_env(args) as env:
        with blob_world(env.workdir / "blobs", args.images) as (port, _):
            runs = [(w, m) for _ in range(args.rounds) for w in args.workers for m in args.modes]
            for run, (workers, mode) in enumerate(runs):
                rows.append(await run_once(env, args, workers, mode, run, port))
                print(" | ".join(map(str, rows[-1])), flush=True)
    h.print_table(
        "image jobs end to end (1–4 MP JPEG photos, embedded matcher, half banked)",
        ["db", "hashing", "workers", "hash procs", "jobs", "seconds", "jobs/s", "labeler CPU ms/job",
         "hashing CPU ms/job", "outcomes (cumulative)"],
        rows,
    )  # fmt: skip
    print(f"\nload average at the end: {h.machine()['loadavg']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_args(p)
    p.add_argument("--jobs", type=int, default=300, help="jobs (photos) per run (default %(default)s)")
    p.add_argument(
        "--workers", type=lambda s: [int(x) for x in s.split(",")], default=[2], help="comma list (default 2)"
    )
    p.add_argument(
        "--modes", type=lambda s: s.split(","), default=["reduced", "exact"], help="hashing modes to alternate"
    )
    p.add_argument("--rounds", type=int, default=2, help="rounds over workers x modes (default %(default)s)")
    p.add_argument(
        "--processes", type=int, default=0, help="hashing processes (default: the service's, one per worker)"
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
