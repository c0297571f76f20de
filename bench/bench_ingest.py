"""Ingest at network scale: a relay stand-in with realistic frames, a blob server with 1–4 MP JPEG photos.

The relay stand-in runs in its own process and serves both protocols from the same events: the repo firehose
(`#commit` frames: DAG-CBOR, records in a CAR with MST-node stand-ins, built by tests/pipeline/stream_standins.py)
and Jetstream v1 JSON. The mix follows the network: 75 % likes, follows and reposts, 20 % posts (about 17 % of
them with 1–4 images, the photos of bench/_photos.py), 5 % deletes and identity events. The labeler
(`Sources` as `labeler ingest` runs them, with `--workers` pipeline workers in the same process as
`labeler ingest --workers N` does) runs in this process; the PLC + PDS stand-in of bench_jobs.py serves DID
documents and blobs from a third. Two phases per run:

- **backlog**: `--events` events are waiting; the source reads them from cursor 0 as fast as it can. Prints
  events/s and jobs/s queued (first frame → last frame read; the batch in hand is saved within a second of
  it, and the wait for that is not counted), the CPU per event of this
  process (the relay and PDS stand-ins and PostgreSQL are not counted), and, with workers, jobs/s done end to
  end (first frame → the last job's outcome: fetch, hash, match, label) with the CPU per job of this process, of
  its hashing processes and of the PostgreSQL server processes serving its connections (the relay and PDS
  stand-ins apart: in production they are other people's machines). On a shared machine the wall-clock rate
  says more about the other work than about the labeler; the last of these columns, the cores divided by the
  CPU per job of labeler + hashing + PostgreSQL, is what the same work would reach with the cores to itself
  (PostgreSQL's background writers not counted).
- **live** (`--live-seconds`, 0 skips it): the stand-in sends `--rate` events/s (the network's ~2,000 by
  default), stamping each frame's time as it sends; the source's lag (now minus the newest event's time, as
  `labeler_source_lag_seconds` reports it) is sampled every 100 ms: p50, p99, max.

Runs alternate between the protocols (`--sources firehose,jetstream`) for `--rounds` rounds. Asserts nothing
about time.

    python bench/bench_ingest.py                                   # SQLite, no workers: the source alone
    python bench/bench_ingest.py --db postgres --workers 2 --events 20000 --sources firehose --live-seconds 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

try:
    from bench import _harness as h
    from bench import _photos
    from bench.bench_jobs import BENCH_ACCOUNT, _cid, _cpu_seconds, _free_port, blob_world
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness as h  # type: ignore[no-redef]
    import _photos  # type: ignore[no-redef]
    from bench_jobs import (  # type: ignore[no-redef]
        BENCH_ACCOUNT,
        _cid,
        _cpu_seconds,
        _free_port,
        blob_world,
    )

from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.sources import Sources
from labeler.service import Labeler
from labeler.store.pipeline_schema import image_jobs, pipeline_cursors

TESTS = Path(__file__).resolve().parent.parent / "tests"
PLACEHOLDER_TIME = "2000-01-01T00:00:00.000Z"  # same length as every stamp written over it
PLACEHOLDER_US = 1_000_000_000_000_000  # Jetstream time_us of event n is this + n until stamped


def _standins() -> Any:
    """The frame builders the tests use (one CAR writer in the repository, not two)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    from pipeline import stream_standins

    return stream_standins


def _stamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Mix:
    """The network's mix of events, seeded; image posts are by BENCH_ACCOUNT, whose PDS serves the photos."""

    def __init__(self, photos: list[tuple[str, int]], seed: int) -> None:
        self.s = _standins()
        self.photos = photos  # (blob CID, size)
        self.rng = random.Random(seed)

    def _did(self) -> str:
        return f"did:plc:{self.rng.randrange(10**20):024d}"

    def _ref(self) -> dict[str, Any]:
        n = self.rng.randrange(10**12)
        return {
            "uri": f"at://{self._did()}/app.bsky.feed.post/3k{n:011d}",
            "cid": self.s.cid_str(self.s.cid_bytes(b"%d" % n)),
        }

    def _post(self) -> tuple[str, dict[str, Any], int]:
        text = " ".join(self.rng.choice(("the", "a", "sky", "photo", "today", "#art", "look")) for _ in range(12))
        record: dict[str, Any] = {"$type": self.s.POST, "text": text, "langs": ["en"], "createdAt": PLACEHOLDER_TIME}
        if self.rng.random() >= 0.17:
            return self._did(), record, 0
        images = []
        for _ in range(self.rng.randint(1, 4)):
            cid, size = self.rng.choice(self.photos)
            ref = self.s.libipld.decode_cid(cid)
            link = bytes((0x01, ref["codec"], 0x12, 0x20)) + bytes(ref["hash"]["digest"])
            blob = {"$type": "blob", "ref": link, "mimeType": "image/jpeg", "size": size}
            images.append({"alt": "", "image": blob, "aspectRatio": {"width": 4, "height": 3}})
        record["embed"] = {"$type": "app.bsky.embed.images", "images": images}
        return BENCH_ACCOUNT, record, len(images)

    def event(self, n: int) -> tuple[str, str, dict[str, Any] | None, str, int]:
        """(did, collection, record or None for a delete, operation, images) for event `n`."""
        roll = self.rng.random()
        if roll < 0.20:
            did, record, images = self._post()
            return did, self.s.POST, record, "create", images
        if roll < 0.95:
            kind = self.rng.choice(("app.bsky.feed.like", "app.bsky.graph.follow", "app.bsky.feed.repost"))
            subject: Any = self._did() if kind == "app.bsky.graph.follow" else self._ref()
            return self._did(), kind, {"$type": kind, "subject": subject, "createdAt": PLACEHOLDER_TIME}, "create", 0
        return self._did(), "app.bsky.feed.like", None, "delete", 0

    def frames(self, count: int, first: int = 1) -> tuple[list[bytes], list[bytes], int]:
        """`count` events as firehose frames and Jetstream messages (both encoded), and how many images in all."""
        firehose, jetstream, images = [], [], 0
        for n in range(first, first + count):
            did, collection, record, operation, k = self.event(n)
            images += k
            rkey = f"3k{n:011d}"
            if self.rng.random() < 0.02:  # identity events: no ops
                body = {"did": did, "handle": None, "time": PLACEHOLDER_TIME}
                firehose.append(self.s.message_frame(n, "#identity", body))
                jetstream.append(json.dumps({"did": did, "time_us": PLACEHOLDER_US + n, "kind": "identity"}).encode())
                continue
            op = self.s.Op(operation, f"{collection}/{rkey}", record)
            frame, _ = self.s.commit_frame(n, did, [op], extra_blocks=4, time=PLACEHOLDER_TIME)
            firehose.append(frame)
            json_record = _links_as_json(record) if record is not None else None
            message = self.s.jetstream_event(
                PLACEHOLDER_US + n, did, rkey, json_record, operation=operation, collection=collection
            )
            jetstream.append(message.encode())
        return firehose, jetstream, images


def _links_as_json(value: Any) -> Any:
    """DAG-CBOR links (CID bytes: the records hold no other bytes) → Jetstream's `{"$link": …}` JSON form."""
    if isinstance(value, bytes):
        return {"$link": _standins().cid_str(value)}
    if isinstance(value, dict):
        return {k: _links_as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_links_as_json(v) for v in value]
    return value


def _serve_relay(port: int, firehose: list[bytes], jetstream: list[bytes], conn: Any) -> None:
    """The relay stand-in: backlog frames from cursor 0 (stamped at build time), then `rate`/s live ones when
    the bench says so (stamped as sent). One connection at a time is all the bench makes."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    live: dict[str, Any] = {"rate": 0.0, "frames": [], "go": None, "backlog": True}

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # the bench hangs up when its live phase ends
            await send(ws)

    async def send(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ""
        frames = firehose if "subscribeRepos" in path else jetstream
        is_json = frames is jetstream
        now = _stamp(time.time()).encode()
        if live["backlog"]:  # once: a reconnect resumes from the cursor, and the backlog is all before it
            live["backlog"] = False
            for chunk in range(0, len(frames), 256):
                for frame in frames[chunk : chunk + 256]:
                    await ws.send(_stamped(frame, is_json, now, None))
        await live["go"].wait()
        interval, t0 = 1.0 / live["rate"], time.monotonic()
        last_us = 0
        for sent, frame in enumerate(live["frames"][1 if is_json else 0]):
            due = t0 + sent * interval
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            epoch = time.time()
            last_us = max(int(epoch * 1e6), last_us + 1)
            await ws.send(_stamped(frame, is_json, _stamp(epoch).encode(), last_us))
        await ws.wait_closed()

    async def main() -> None:
        live["go"] = asyncio.Event()
        async with serve(handler, "127.0.0.1", port, max_size=None, compression=None):
            conn.send("ready")
            while True:
                message = await asyncio.to_thread(conn.recv)
                if message == "stop":
                    return
                rate, frames = message
                live["rate"], live["frames"] = rate, frames
                live["go"].set()

    asyncio.run(main())


def _stamped(frame: bytes, is_json: bool, stamp: bytes, time_us: int | None) -> bytes | str:
    if not is_json:
        return frame.replace(PLACEHOLDER_TIME.encode(), stamp)
    text = frame.decode()
    if time_us is not None:
        start = text.index('"time_us": ') + len('"time_us": ')
        end = text.index(",", start)
        text = text[:start] + str(time_us) + text[end:]
    return text


async def run_once(
    env: h.BenchEnv, args: argparse.Namespace, kind: str, run: int, world: int, world_pid: int
) -> list[Any]:
    relay_port = _free_port()
    parent, child = multiprocessing.get_context("spawn").Pipe()
    relay = multiprocessing.get_context("spawn").Process(
        target=_serve_relay, args=(relay_port, args.firehose, args.jetstream, child), daemon=True
    )
    relay.start()
    try:
        await asyncio.to_thread(parent.recv)
        url = f"ws://127.0.0.1:{relay_port}" + ("" if kind == "firehose" else "/subscribe")
        settings = env.settings(
            **{f"{kind}_url": url},
            plc_url=f"http://127.0.0.1:{world}",
            allow_private_fetch=True,
            workers=args.workers,
            max_image_bytes=50_000_000,
            ingest_max_pending_jobs=0,
            extra={"pipeline": {"poll_seconds": 0.02}},
        )
        labeler = Labeler(settings, with_hub=False)
        await labeler.start(workers=args.workers, create_dev_key=True)
        try:
            return await _measure(labeler, args, kind, run, parent, [relay.pid or 0, world_pid])
        finally:
            await labeler.aclose()
    finally:
        parent.send("stop")
        relay.join(5)
        if relay.is_alive():
            relay.terminate()


async def _pg_backends(labeler: Labeler) -> list[int]:
    """The PostgreSQL server processes serving this benchmark's database (its connection pool)."""
    if labeler.engine.dialect.name != "postgresql":
        return []
    async with labeler.engine.connect() as conn:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        return [int(pid) for (pid,) in await conn.exec_driver_sql(query)]


async def _measure(
    labeler: Labeler, args: argparse.Namespace, kind: str, run: int, relay: Any, others: list[int]
) -> list[Any]:
    p = labeler.pipeline
    async with labeler.engine.begin() as conn:  # every run queues the same jobs afresh
        await conn.execute(image_jobs.delete())
        await conn.execute(pipeline_cursors.delete())
    if run == 0:
        await p.banks.create("BENCH")
        await p.banks.add_entries("BENCH", [EntryInput(pdq) for pdq in args.banked])
    if args.workers:
        await p.hasher.hash(args.images[0])
        await p.matcher.lookup(args.banked[0])
    sources: Sources = labeler.sources
    source = sources.sources[0]
    await p.cursors.set(source.name, "0")
    pids = p.hasher.pool.pids if args.workers else []
    cpu, hashing, standins = time.process_time(), _cpu_seconds(pids), _cpu_seconds(others)
    database = {pid: _cpu_seconds([pid]) for pid in await _pg_backends(labeler)}
    sources.start()
    await _until(lambda: source.stats.events > 0, 0.001)
    first = time.perf_counter()  # the connection is up; the backlog flows
    await _until(lambda: source.stats.events >= args.events, 0.002)
    read_s = time.perf_counter() - first
    read_cpu = time.process_time() - cpu
    await _until(lambda: source.stats.saved_cursor == source.cursor, 0.005)  # the last batch (≤ 1 s) is in
    queued = source.stats.jobs
    row: list[Any] = [
        h.machine()["loadavg"].split()[0], kind, args.workers, args.events, f"{args.events / read_s:,.0f}",
        f"{queued / read_s:,.0f}", f"{read_cpu / args.events * 1e6:.0f}",
        f"{read_cpu / read_s * 100:.0f}%" if not args.workers else "-",
    ]  # fmt: skip
    if args.workers:
        while await p.jobs.pending(1):  # noqa: ASYNC110 -- all is queued (the cursor is saved): the last outcome
            await asyncio.sleep(0.02)
        end_s = time.perf_counter() - first
        used, hashed = time.process_time() - cpu, _cpu_seconds(pids) - hashing
        served = sum(_cpu_seconds([pid]) - database.get(pid, 0.0) for pid in await _pg_backends(labeler))
        ours = (used + hashed + served) / queued  # what the labeler's box spends: not the relay's nor the PDS's
        row += [
            f"{queued}", f"{queued / end_s:.1f}", f"{used / queued * 1000:.1f}", f"{hashed / queued * 1000:.1f}",
            f"{served / queued * 1000:.1f}" if database else "-",
            f"{(_cpu_seconds(others) - standins) / queued * 1000:.1f}",
            f"{ours * 1000:.1f}", f"{(os.cpu_count() or 1) / ours:.0f}",
        ]  # fmt: skip
    else:
        row += ["-"] * 8
    row += await _live(source, args, relay) if args.live_seconds else ["-", "-", "-"]
    await sources.aclose()
    return row


async def _until(predicate: Any, step: float) -> None:
    while not predicate():  # noqa: ASYNC110 -- polls the source's counters, as a scrape would
        await asyncio.sleep(step)


async def _live(source: Any, args: argparse.Namespace, relay: Any) -> list[str]:
    count = int(args.rate * args.live_seconds)
    relay.send((args.rate, (args.live_firehose[:count], args.live_jetstream[:count])))
    lags: list[float] = []
    end = time.monotonic() + args.live_seconds
    while time.monotonic() < end:
        await asyncio.sleep(0.1)
        if source.stats.event_time is not None:
            lags.append(time.time() - source.stats.event_time)
    lags = lags[5:]  # the first half second is the switch from backlog to live
    return [f"{h.percentile(lags, 50) * 1000:.0f}", f"{h.percentile(lags, 99) * 1000:.0f}", f"{max(lags) * 1000:.0f}"]


async def main(args: argparse.Namespace) -> None:
    h.print_machine(args)
    corpus = _photos.build(args.photos)
    print(f"corpus: {corpus.describe()}", flush=True)
    args.images = [photo.data for photo in corpus.photos]
    photos = [(_cid(d), len(d)) for d in args.images]
    mix = Mix(photos, seed=17)
    args.firehose, args.jetstream, images = mix.frames(args.events)
    live_count = int(args.rate * args.live_seconds)
    live = Mix(photos, seed=18).frames(live_count, first=args.events + 1) if live_count else ([], [], 0)
    args.live_firehose, args.live_jetstream, _ = live
    args.banked = [hash_image(d, reduced_decode=True).hash for d in args.images[::2]]
    print(f"{args.events} events, {images} images ({images / args.events:.3f} per event)", flush=True)
    rows: list[list[Any]] = []
    async with h.bench_env(args) as env:
        with blob_world(env.workdir / "blobs", args.images) as (world_port, world_pid):
            runs = [kind for _ in range(args.rounds) for kind in args.sources]
            for run, kind in enumerate(runs):
                rows.append(await run_once(env, args, kind, run, world_port, world_pid))
                print(" | ".join(map(str, rows[-1])), flush=True)
    h.print_table(
        f"ingest ({env.db}): realistic frames from a relay stand-in; jobs fetched from a PDS stand-in",
        ["load", "source", "workers", "events", "events/s", "jobs/s queued", "CPU µs/event", "CPU (read)",
         "jobs", "jobs/s end to end", "CPU ms/job", "hashing CPU ms/job", "PostgreSQL CPU ms/job",
         "stand-ins CPU ms/job", "labeler + hashing + PostgreSQL CPU ms/job", "jobs/s if the cores were ours",
         "lag p50 ms", "lag p99 ms", "lag max ms"],
        rows,
    )  # fmt: skip
    print(f"\nload average at the end: {h.machine()['loadavg']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_args(p)
    p.add_argument("--events", type=int, default=50_000, help="backlog events per run (default %(default)s)")
    p.add_argument("--photos", type=int, default=60, help="distinct photos the image posts use (default %(default)s)")
    p.add_argument("--workers", type=int, default=0, help="pipeline workers in the ingest process (default 0)")
    p.add_argument("--sources", type=lambda s: s.split(","), default=["firehose", "jetstream"], help="to alternate")
    p.add_argument("--rounds", type=int, default=2, help="rounds over the sources (default %(default)s)")
    p.add_argument("--rate", type=float, default=2000.0, help="live events/s (default %(default)s)")
    p.add_argument("--live-seconds", type=float, default=10.0, help="live phase length; 0 skips it")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
