"""Label write throughput: in-process through LabelWriter with many concurrent callers, and over HTTP
(`tools.ozone.moderation.emitEvent`, Basic auth) over concurrent keep-alive connections of a minimal HTTP/1.1
client in a separate process, whose CPU time is printed beside the server's so a saturated client shows.

Every label is validated, signed, sequenced, committed (group commit) and handed to the stream hub, exactly as in
production. Prints labels/s (wall clock) and per-call latency, and labels per CPU-second of the labeler process
(all its threads: `time.process_time`), which is what the code costs whatever else the machine is running.
Asserts nothing about time.

    python bench/bench_writer.py                      # SQLite, defaults (~1 min)
    python bench/bench_writer.py --db postgres
    python bench/bench_writer.py --labels 100000 --callers 500
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import sys
import time
import uuid
from typing import Any

try:
    from bench import _harness as h
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness as h  # type: ignore[no-redef]

from labeler.labels.writer import LabelRequest
from labeler.protocol import syntax
from labeler.protocol.crypto import SigningKey
from labeler.protocol.label import Label
from labeler.testing import serve_labeler

TARGET_IN_PROCESS = 15_000


def _requests(run: str, count: int, per_call: int) -> list[list[LabelRequest]]:
    """`count` labels on distinct subjects, grouped `per_call` to a write() call."""
    reqs = [
        LabelRequest(uri=h.did_for(hash((run, i)) & 0xFFFFFFFFFFFF), val=h.VALUES[i % len(h.VALUES)], via="bench")
        for i in range(count)
    ]
    return [reqs[i : i + per_call] for i in range(0, count, per_call)]


async def in_process(env: h.BenchEnv, args: argparse.Namespace) -> list[list[Any]]:
    rows = []
    settings = env.settings()
    gc.freeze()  # as `labeler serve` does before it starts the labeler: imports leave the cyclic GC's scans
    async with h.running_labeler(settings) as labeler:
        writer = labeler.writer
        for per_call in args.per_call:
            calls = _requests(uuid.uuid4().hex, args.labels, per_call)
            warm = _requests(uuid.uuid4().hex, min(2000, args.labels), per_call)
            for batch in warm:
                await writer.write(batch)
            latencies: list[float] = []
            it = iter(calls)

            async def caller(latencies: list[float] = latencies, it: Any = it) -> None:
                for batch in it:
                    t = time.perf_counter()
                    await writer.write(batch)
                    latencies.append(time.perf_counter() - t)

            t0, c0 = time.perf_counter(), time.process_time()
            await asyncio.gather(*(caller() for _ in range(args.callers)))
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            rate = args.labels / elapsed
            med, p99, _mx, _mean = h.latency_summary(latencies)
            verdict = "met" if rate >= TARGET_IN_PROCESS else "MISSED"
            rows.append(
                [
                    "LabelWriter.write (in-process)",
                    args.callers,
                    per_call,
                    args.labels,
                    f"{elapsed:.2f}",
                    f"{rate:,.0f}",
                    med,
                    p99,
                    f"{args.labels / cpu:,.0f}",
                    f">= {TARGET_IN_PROCESS:,}/s: {verdict}",
                ]
            )
        rows.append(signing_floor(labeler.keyring.active()[1], labeler.writer.src, args.labels))
    return rows


def signing_floor(key: SigningKey, src: str, count: int) -> list[Any]:
    """The ceiling of any writer that signs on one thread: bare signatures/s of the active key over real labels'
    signing bytes, with nothing else (no validation, sequencing, store, event loop)."""
    cts = syntax.now()
    messages = [Label(src, h.did_for(i), "spam", cts).signing_bytes() for i in range(count)]
    sign = key.sign
    t0, c0 = time.perf_counter(), time.process_time()
    for message in messages:
        sign(message)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return [
        "floor: signing alone, one thread",
        1,
        1,
        count,
        f"{elapsed:.2f}",
        f"{count / elapsed:,.0f}",
        "",
        "",
        f"{count / cpu:,.0f}",
        f"{key.curve.value}: the most labels/s one thread can sign",
    ]


# --- HTTP: the client runs in its own process --------------------------------------------------------------


def _http_client(conn: Any, url: str, concurrency: int, requests: int, values_per_request: int, run: str) -> None:
    h.use_uvloop()
    conn.send(asyncio.run(_http_client_main(url, concurrency, requests, values_per_request, run)))


EMIT_EVENT_PATH = "/xrpc/tools.ozone.moderation.emitEvent"


def _emit_event_requests(host: str, requests: int, values_per_request: int, run: str) -> list[bytes]:
    """Each emitEvent as the exact bytes of an HTTP/1.1 keep-alive request (Basic auth, JSON body)."""
    auth = "Basic " + base64.b64encode(f"admin:{h.ADMIN_PASSWORD}".encode()).decode()
    out = []
    for i in range(requests):
        body = json.dumps(
            {
                "subject": {
                    "$type": "com.atproto.admin.defs#repoRef",
                    "did": h.did_for(hash((run, i)) & 0xFFFFFFFFFFFF),
                },
                "event": {
                    "$type": "tools.ozone.moderation.defs#modEventLabel",
                    "createLabelVals": list(h.VALUES[:values_per_request]),
                    "negateLabelVals": [],
                },
                "createdBy": h.BENCH_DID,
            }
        ).encode()
        head = (
            f"POST {EMIT_EVENT_PATH} HTTP/1.1\r\nhost: {host}\r\nauthorization: {auth}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response framed by Content-Length (how uvicorn sends a JSONResponse)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _http_client_main(
    url: str, concurrency: int, requests: int, values_per_request: int, run: str
) -> dict[str, Any]:
    """`concurrency` keep-alive connections, each sending its next request when the previous answer arrived.

    A minimal client on asyncio streams with the requests encoded up front, so the client costs far less per
    request than the server (httpx cost ~8 ms CPU a request at 64 connections, more than the server itself).
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    it = iter(_emit_event_requests(f"{host}:{port}", requests, values_per_request, run))
    latencies: list[float] = []
    errors: list[str] = []
    connections = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for request in it:
            t = time.perf_counter()
            writer.write(request)
            status, body = await _read_response(reader)
            latencies.append(time.perf_counter() - t)
            if status != 200:
                errors.append(f"{status} {body[:200]!r}")

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(reader, writer) for reader, writer in connections))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    for _, writer in connections:
        writer.close()
    return {"elapsed": elapsed, "cpu": cpu, "latencies": latencies, "errors": errors}


async def over_http(env: h.BenchEnv, args: argparse.Namespace) -> list[list[Any]]:
    rows = []
    settings = env.settings()
    timer: h.ServerTimer | None = None

    def wrap(app: Any) -> Any:
        nonlocal timer
        timer = h.ServerTimer(app)
        return timer

    async with h.running_labeler(settings) as labeler, serve_labeler(labeler, wrap=wrap) as live:
        assert timer is not None
        for concurrency in args.http_clients:
            timer.label = f"c{concurrency}"
            c0 = time.process_time()
            proc, conn = h.spawn(
                _http_client, live.url, concurrency, args.http_requests, args.values_per_request, uuid.uuid4().hex
            )
            result = await h.recv(conn)
            cpu = time.process_time() - c0  # the server process only; the client runs in its own
            proc.join()
            if result["errors"]:
                print(f"emitEvent errors ({len(result['errors'])}), first: {result['errors'][0]}", file=sys.stderr)
            elapsed = result["elapsed"]
            labels = args.http_requests * args.values_per_request
            med, p99, _mx, _mean = h.latency_summary(result["latencies"])
            s_med, s_p99, _smx, _smean = h.latency_summary(timer.samples.get(f"c{concurrency}", []))
            rows.append(
                [
                    "emitEvent over HTTP",
                    concurrency,
                    args.values_per_request,
                    labels,
                    f"{elapsed:.2f}",
                    f"{labels / elapsed:,.0f}",
                    med,
                    p99,
                    f"{labels / cpu:,.0f}",
                    f"{args.http_requests / elapsed:,.0f} req/s, server p50/p99 {s_med}/{s_p99} ms, "
                    f"server cpu {cpu:.1f} s, client cpu {result['cpu']:.1f} s, {len(result['errors'])} errors",
                ]
            )
    return rows


async def main(args: argparse.Namespace) -> None:
    h.print_machine(args)
    rows: list[list[Any]] = []
    async with h.bench_env(args) as env:
        if not args.skip_in_process:
            rows += await in_process(env, args)
        if not args.skip_http:
            rows += await over_http(env, args)
    h.print_table(
        "label writes",
        ["path", "callers", "labels/call", "labels", "seconds", "labels/s", "p50 ms", "p99 ms", "labels/cpu-s", "note"],
        rows,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(x) for x in text.split(",")]

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_args(p)
    p.add_argument("--labels", type=int, default=60_000, help="labels per in-process run (default %(default)s)")
    p.add_argument("--callers", type=int, default=256, help="concurrent in-process callers (default %(default)s)")
    p.add_argument("--per-call", type=ints, default=[1, 10], help="labels per write() call, comma list (default 1,10)")
    p.add_argument("--http-requests", type=int, default=10_000, help="emitEvent requests per run (default %(default)s)")
    p.add_argument("--http-clients", type=ints, default=[64], help="concurrent HTTP clients, comma list (default 64)")
    p.add_argument("--values-per-request", type=int, default=1, help="createLabelVals per emitEvent (default 1)")
    p.add_argument("--skip-in-process", action="store_true")
    p.add_argument("--skip-http", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    h.use_uvloop()
    asyncio.run(main(parse_args()))
