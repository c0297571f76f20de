"""queryLabels latency over HTTP at growing table sizes (default 100k and 1M labels).

The table is bulk-loaded with really signed labels (two per subject; 30 % account DIDs, 70 % post URIs, in
scattered URI order), then the labeler is served on real uvicorn and a client in a separate process (plain
http.client, keep-alive, one request at a time) measures, per request, send → full body received:

- exact URI: `uriPatterns=<one stored uri>` (a random subject each time; 2 labels back)
- `*` limit=250: `uriPatterns=*&limit=250&cursor=<random stored seq>` (a random page of the whole table)
- prefix: `uriPatterns=at://did:plc:<random stored did>*`
- `*` limit=250 from the first page (cursor absent)
- `*` limit=250 at a random cursor with `sources=` the labeler's own DID, and with a DID that has no labels here

Targets at 1M labels: exact-uri p99 <= 3 ms, `*` p99 <= 10 ms. Prints figures; asserts nothing.

    python bench/bench_query.py                       # SQLite, 100k and 1M (~3-4 min, mostly loading)
    python bench/bench_query.py --db postgres --sizes 100000
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import random
import time
import urllib.parse
from typing import Any

try:
    from bench import _harness as h
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness as h  # type: ignore[no-redef]

import sqlalchemy as sa

from labeler.store.schema import labels
from labeler.testing import serve_labeler

TARGETS = {"exact uri": 0.003, "* limit=250 (random cursor)": 0.010}
PATH = "/xrpc/com.atproto.label.queryLabels?"


def _client(conn: Any, port: int, size: int, seq_min: int, seq_max: int, requests: int, seed: int) -> None:
    rng = random.Random(seed)
    http_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(query: str) -> tuple[float, dict[str, Any]]:
        t = time.perf_counter()
        http_conn.request("GET", PATH + query)
        resp = http_conn.getresponse()
        body = resp.read()
        elapsed = time.perf_counter() - t
        if resp.status != 200:
            raise RuntimeError(f"{resp.status}: {body[:300]!r}")
        return elapsed, json.loads(body)

    def exact() -> tuple[str, int]:
        uri = h.loaded_uri(rng.randrange(size))
        return "uriPatterns=" + urllib.parse.quote(uri, safe=""), 2

    def star_page() -> tuple[str, int]:
        cursor = rng.randrange(seq_min - 1, seq_max - 250)
        return f"uriPatterns=*&limit=250&cursor={cursor}", 250

    def prefix() -> tuple[str, int]:
        i = rng.randrange(size)
        while not h.loaded_uri(i).startswith("at://"):
            i = rng.randrange(size)
        did = h.loaded_uri(i).split("/")[2]
        return "uriPatterns=" + urllib.parse.quote(f"at://{did}/*", safe=""), 2

    def star_first() -> tuple[str, int]:
        return "uriPatterns=*&limit=250", 250

    def star_own_source() -> tuple[str, int]:
        return f"{star_page()[0]}&sources={urllib.parse.quote(h.BENCH_DID)}", 250

    def star_absent_source() -> tuple[str, int]:
        return f"{star_page()[0]}&sources=did:plc:{rng.randrange(10**12):024d}", 0

    results: dict[str, list[float]] = {}
    for name, make in (
        ("exact uri", exact),
        ("* limit=250 (random cursor)", star_page),
        ("prefix at://did/*", prefix),
        ("* limit=250 (first page)", star_first),
        ("* limit=250 sources=own DID", star_own_source),
        ("* limit=250 sources=other DID", star_absent_source),
    ):
        for _ in range(min(200, requests)):  # warm-up: connection, caches, code paths
            get(make()[0])
        conn.send(("phase", name))
        conn.recv()  # the server has switched its timer to this phase
        samples = []
        for _ in range(requests):
            query, expected = make()
            elapsed, body = get(query)
            if len(body["labels"]) != expected:
                raise RuntimeError(f"{name}: expected {expected} labels, got {len(body['labels'])} for {query}")
            samples.append(elapsed)
        results[name] = samples
        conn.send(("phase", None))
        conn.recv()
    http_conn.close()
    conn.send(("done", results))


async def _count(settings: Any) -> int:
    from labeler.store.engine import create_engine

    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(labels))).scalar_one())
    finally:
        await engine.dispose()


async def _seq_range(settings: Any) -> tuple[int, int, int]:
    from labeler.store.engine import create_engine

    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(sa.select(sa.func.min(labels.c.seq), sa.func.max(labels.c.seq), sa.func.count()))
            ).one()
            return int(row[0]), int(row[1]), int(row[2])
    finally:
        await engine.dispose()


async def main(args: argparse.Namespace) -> None:
    h.print_machine(args)
    rows: list[list[Any]] = []
    loads: list[list[Any]] = []
    async with h.bench_env(args) as env:
        settings = env.settings()
        loaded = await _count(settings)  # a kept --workdir may hold a table loaded by an earlier run
        for size in sorted(args.sizes):
            if loaded > size:
                print(f"skipping {size:,}: the kept table already holds {loaded:,} labels")
                continue
            if loaded < size:
                seconds = await h.bulk_load(settings, loaded, size)
                loads.append([f"{size:,}", f"{size - loaded:,}", f"{seconds:.1f}", f"{(size - loaded) / seconds:,.0f}"])
                loaded = size
            seq_min, seq_max, count = await _seq_range(settings)
            assert count == size, (count, size)
            timer: h.ServerTimer | None = None

            def wrap(app: Any) -> Any:
                nonlocal timer
                timer = h.ServerTimer(app)
                return timer

            load_before = h.machine()["loadavg"]
            async with h.running_labeler(settings) as labeler, serve_labeler(labeler, wrap=wrap) as live:
                assert timer is not None
                proc, conn = h.spawn(_client, live.port, size, seq_min, seq_max, args.requests, args.seed)
                while True:
                    kind, value = await h.recv(conn)
                    if kind == "done":
                        results = value
                        break
                    timer.label = value
                    conn.send("ok")
                proc.join()
            print(f"{size:,} labels: load average before {load_before}, after {h.machine()['loadavg']}")
            for name, samples in results.items():
                med, p99, mx, _mean = h.latency_summary(samples)
                server = timer.samples.get(name, [])
                s_med, s_p99, _smx, _smean = h.latency_summary(server[-len(samples) :])
                cpu = timer.cpu.get(name, [])[-len(samples) :]
                c_med, c_p99, _cmx, _cmean = h.latency_summary(cpu)
                target = TARGETS.get(name)
                verdict = ""
                if target is not None and size >= 1_000_000:
                    ok = h.percentile(samples, 99) <= target
                    verdict = f"p99 <= {target * 1000:g} ms: {'met' if ok else 'MISSED'}"
                rows.append([f"{size:,}", name, len(samples), med, p99, mx, s_med, s_p99, c_med, c_p99, verdict])
    h.print_table("bulk load (signing + insert, no audit events)", ["labels", "added", "seconds", "labels/s"], loads)
    h.print_table(
        "queryLabels latency over HTTP (one client, sequential)",
        [
            "labels",
            "query",
            "n",
            "p50 ms",
            "p99 ms",
            "max ms",
            "server p50",
            "server p99",
            "cpu p50",
            "cpu p99",
            "target (1M, client p99)",
        ],
        rows,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_args(p)
    p.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100_000, 1_000_000],
        help="table sizes to measure at, comma list (default 100000,1000000)",
    )
    p.add_argument("--requests", type=int, default=2000, help="timed requests per query kind (default %(default)s)")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args(argv)


if __name__ == "__main__":
    h.use_uvloop()
    asyncio.run(main(parse_args()))
