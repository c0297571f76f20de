"""Image jobs end to end: enqueue → claim → resolve DID → getBlob over HTTP → verify CID → decode + PDQ (process
pool) → embedded match → policy → signed label, with a local PLC + PDS stand-in in a separate process.

Half the images are in an embedded bank, so half the jobs write a label. Prints jobs/s (wall clock, from the
first claim to the last outcome), labels written, and the outcome counts. Asserts nothing about time.

    python bench/bench_jobs.py                         # SQLite, 400 JPEGs of 1024 px, workers 4 and 16
    python bench/bench_jobs.py --db postgres --jobs 1000 --workers 8,32 --size 512
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import multiprocessing
import os
import socket
import time
from pathlib import Path
from typing import Any

try:
    from bench import _harness as h
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness as h  # type: ignore[no-redef]

import libipld
import numpy as np
from PIL import Image

from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.jobs import ImageRef, JobSpec

BENCH_ACCOUNT = "did:plc:benchpostsbenchpostsbenc"


def _image(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    pixels = np.stack([255 * x / size, 255 * (y / size) ** 1.5, 127 + 100 * np.sin(x / (7 + seed % 13))], axis=2)
    pixels += rng.normal(0, 20, pixels.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=85)
    return out.getvalue()


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


async def run_once(env: h.BenchEnv, args: argparse.Namespace, workers: int, run: int, port: int) -> list[Any]:
    images: list[bytes] = args.images
    settings = env.settings(
        plc_url=f"http://127.0.0.1:{port}",
        allow_private_fetch=True,
        workers=workers,
        max_image_bytes=50_000_000,
        extra={"pipeline": {"poll_seconds": 0.02, "hash_processes": args.processes}},
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
        await p.hasher.hash(images[0])  # warm the process pool and the bank index before timing
        await p.matcher.lookup(args.banked[0])
        await p.jobs.enqueue(specs)
        started, cpu = time.perf_counter(), time.process_time()
        await p.start(workers=workers)
        while True:  # done counts are cumulative over runs (one database)
            if (await p.jobs.counts())["done"] >= len(specs) * (run + 1):
                break
            await asyncio.sleep(0.02)
        elapsed, cpu_used = time.perf_counter() - started, time.process_time() - cpu
        outcomes = await p.jobs.outcomes()
    rate = len(specs) / elapsed
    cpu_ms = f"{cpu_used / len(specs) * 1000:.1f}"
    summary = " ".join(f"{k}={v}" for k, v in sorted(outcomes.items()))
    return [env.db, workers, args.processes, len(specs), f"{elapsed:.2f}", f"{rate:.1f}", cpu_ms, summary]


async def main(args: argparse.Namespace) -> None:
    h.print_machine(args)
    args.processes = args.processes or (os.cpu_count() or 1)
    print(f"generating {args.jobs} JPEGs of {args.size}px …", flush=True)
    args.images = [_image(args.size, seed) for seed in range(args.jobs)]
    args.banked = [hash_image(d).hash for d in args.images[::2]]
    rows: list[list[Any]] = []
    async with h.bench_env(args) as env:
        blob_dir = env.workdir / "blobs"
        blob_dir.mkdir()
        for data in args.images:
            (blob_dir / _cid(data)).write_bytes(data)
        port = _free_port()
        world = multiprocessing.get_context("spawn").Process(
            target=_serve_world, args=(port, str(blob_dir)), daemon=True
        )
        world.start()
        try:
            _wait_for_port(port)
            for run, workers in enumerate(args.workers):
                rows.append(await run_once(env, args, workers, run, port))
        finally:
            world.terminate()
            world.join(5)
    h.print_table(
        f"image jobs end to end ({args.size}px JPEG, embedded matcher, half banked)",
        ["db", "workers", "hash procs", "jobs", "seconds", "jobs/s", "labeler cpu ms/job", "outcomes (cumulative)"],
        rows,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_args(p)
    p.add_argument("--jobs", type=int, default=400, help="jobs per run (default %(default)s)")
    p.add_argument("--size", type=int, default=1024, help="image side in pixels (default %(default)s)")
    p.add_argument(
        "--workers", type=lambda s: [int(x) for x in s.split(",")], default=[4, 16], help="comma list (default 4,16)"
    )
    p.add_argument("--processes", type=int, default=0, help="hashing processes (default: one per CPU)")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
