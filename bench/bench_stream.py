"""subscribeLabels over real WebSockets: backfill throughput from cursor=0, and live emit → subscriber latency.

What runs where (2 cores): the labeler (writer, hub, uvicorn) runs in this process; every WebSocket client runs
in a separate process, so client work does not steal the server's event loop. The client is a minimal RFC 6455
client over plain sockets (`_harness.RawWebSocket`, epoll, no decoding of the CBOR beyond reading the seq at its
fixed offset; the first and last backfill frames are fully decoded and their signatures verified), so that the
server, not the client, is what is measured. Both processes still share the 2 cores.

- backfill: N labels are bulk-loaded (really signed), then one client connects with `cursor=0` and reads until it
  has every seq; labels/s = N / (connect → last frame). Target >= 100,000/s.
- live: S subscribers connect with no cursor; this process then emits M labels one at a time through the
  LabelWriter (`--interval` apart) and records the monotonic time just before each `write()`. The client process
  timestamps each wake-up of its epoll loop (CLOCK_MONOTONIC is shared by all processes) and attributes that time
  to every frame read in that wake-up, so its own per-frame work does not inflate later subscribers' figures.
  latency = receive time - emit time, over every (subscriber, label) pair. Target p99 <= 10 ms at 1,000.

    python bench/bench_stream.py                          # SQLite, defaults (~2 min)
    python bench/bench_stream.py --backfill 1000000 --subscribers 1,100,1000 --labels 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import selectors
import time
from typing import Any

try:
    from bench import _harness as h
except ImportError:  # run as a script: bench/ is sys.path[0]
    import _harness as h  # type: ignore[no-redef]

from labeler.labels.writer import LabelRequest

TARGET_BACKFILL = 100_000
TARGET_LIVE_P99 = 0.010
SUBSCRIBE = "/xrpc/com.atproto.label.subscribeLabels"


def _pong(ws: h.RawWebSocket, payload: bytes) -> None:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    with contextlib.suppress(OSError):
        ws.sock.sendall(bytes((0x8A, 0x80 | len(payload))) + mask + masked)


# --- backfill ------------------------------------------------------------------------------------------------


def _backfill_client(conn: Any, port: int, expected: int, did_key: str) -> None:
    from labeler.protocol.frames import decode_frame
    from labeler.protocol.label import Label

    t0 = time.perf_counter()
    ws = h.RawWebSocket.connect("127.0.0.1", port, f"{SUBSCRIBE}?cursor=0")
    count, last_seq, first, last, error = 0, 0, None, None, None
    sock = ws.sock
    while count < expected:
        data = sock.recv(1 << 20)
        if not data:
            error = f"connection closed after {count} frames"
            break
        ws.feed(data)
        for opcode, payload in ws.parse():
            if opcode == 0x9:
                _pong(ws, payload)
                continue
            if opcode != 0x2:
                error = f"unexpected opcode {opcode} after {count} frames: {payload[:100]!r}"
                break
            seq = h.frame_seq(payload)
            if seq <= last_seq:
                error = f"seq went backwards: {seq} after {last_seq}"
                break
            last_seq = seq
            count += 1
            if first is None:
                first = payload
            last = payload
        if error:
            break
    elapsed = time.perf_counter() - t0
    ws.close()
    verified = 0
    for frame in (first, last):
        if frame is not None:
            _header, body = decode_frame(frame)
            verified += Label.from_ipld(body["labels"][0]).verify(did_key)
    conn.send({"elapsed": elapsed, "count": count, "error": error, "verified": verified})


async def backfill(env: h.BenchEnv, args: argparse.Namespace) -> list[list[Any]]:
    settings = env.settings()
    load_s = await h.bulk_load(settings, 0, args.backfill)
    print(f"loaded {args.backfill:,} signed labels in {load_s:.1f} s")
    rows = []
    async with h.running_labeler(settings) as labeler, h.serve_labeler(labeler) as live:
        did_key = labeler.keyring.active()[0].did_key
        for attempt in range(args.repeat):
            proc, conn = h.spawn(_backfill_client, live.port, args.backfill, did_key)
            result = await h.recv(conn)
            proc.join()
            rate = result["count"] / result["elapsed"]
            verdict = f">= {TARGET_BACKFILL:,}/s: {'met' if rate >= TARGET_BACKFILL else 'MISSED'}"
            note = result["error"] or f"first+last frame signatures verified: {result['verified']}/2"
            rows.append(
                [
                    f"backfill cursor=0 (run {attempt + 1})",
                    f"{result['count']:,}",
                    f"{result['elapsed']:.2f}",
                    f"{rate:,.0f}",
                    verdict,
                    note,
                ]
            )
    return rows


# --- live latency --------------------------------------------------------------------------------------------


def _live_client(conn: Any, port: int, subscribers: int) -> None:
    sockets: dict[int, h.RawWebSocket] = {}
    try:
        for _ in range(subscribers):
            ws = h.RawWebSocket.connect("127.0.0.1", port, SUBSCRIBE)
            ws.sock.setblocking(False)
            sockets[ws.sock.fileno()] = ws
    except OSError as exc:
        conn.send({"error": f"connect failed after {len(sockets)}: {exc}"})
        return
    sel = selectors.DefaultSelector()
    for fd in sockets:
        sel.register(fd, selectors.EVENT_READ)
    sel.register(conn.fileno(), selectors.EVENT_READ)
    conn.send({"ready": len(sockets)})
    # received[seq] = list of receive times (one per subscriber that got it)
    received: dict[int, list[float]] = {}
    closed = 0
    stop = False
    while not stop:
        events = sel.select(timeout=1.0)
        now = time.monotonic()
        for key, _mask in events:
            fd = key.fd
            if fd == conn.fileno():
                stop = True
                continue
            ws = sockets[fd]
            try:
                data = ws.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(fd)
                closed += 1
                continue
            ws.feed(data)
            for opcode, payload in ws.parse():
                if opcode == 0x2:
                    received.setdefault(h.frame_seq(payload), []).append(now)
                elif opcode == 0x9:
                    ws.sock.setblocking(True)
                    _pong(ws, payload)
                    ws.sock.setblocking(False)
    conn.recv()
    for ws in sockets.values():
        ws.sock.setblocking(True)
        ws.close()
    conn.send({"received": received, "closed": closed})


async def live(env: h.BenchEnv, args: argparse.Namespace) -> list[list[Any]]:
    rows = []
    settings = env.settings()
    async with h.running_labeler(settings) as labeler, h.serve_labeler(labeler) as live_server:
        for subscribers in args.subscribers:
            proc, conn = h.spawn(_live_client, live_server.port, subscribers)
            hello = await h.recv(conn, wait=300)
            if "error" in hello:
                raise RuntimeError(hello["error"])
            # let the hub register every connection
            for _ in range(200):
                if labeler.hub is not None and len(labeler.hub.subscribers) >= subscribers:
                    break
                await asyncio.sleep(0.05)
            emitted: dict[int, float] = {}
            run = os.urandom(6).hex()
            t_start = time.monotonic()
            for i in range(args.labels):
                request = LabelRequest(uri=h.did_for(hash((run, i)) & 0xFFFFFFFFFFFF), val="spam", via="bench")
                t = time.monotonic()
                stored = await labeler.writer.write_one(request)
                emitted[stored.seq] = t
                # pace emissions on a fixed schedule, not after each write
                delay = t_start + (i + 1) * args.interval - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await asyncio.sleep(args.settle)
            conn.send("stop")
            result = await h.recv(conn, wait=120)
            conn.send("bye")
            proc.join(timeout=30)
            received: dict[int, list[float]] = result["received"]
            latencies = [t - emitted[seq] for seq, times in received.items() if seq in emitted for t in times]
            expected = subscribers * len(emitted)
            med, p99, mx, _mean = h.latency_summary(latencies)
            ok = subscribers < 1000 or h.percentile(latencies, 99) <= TARGET_LIVE_P99
            verdict = f"p99 <= 10 ms: {'met' if ok else 'MISSED'}" if subscribers >= 1000 else ""
            rows.append(
                [
                    subscribers,
                    len(emitted),
                    f"{1 / args.interval:g}/s",
                    f"{len(latencies):,}/{expected:,}",
                    med,
                    p99,
                    mx,
                    result["closed"],
                    verdict,
                ]
            )
    return rows


async def main(args: argparse.Namespace) -> None:
    h.print_machine(args)
    async with h.bench_env(args) as env:
        backfill_rows = await backfill(env, args) if args.backfill else []
        live_rows = await live(env, args) if args.subscribers else []
    if backfill_rows:
        h.print_table(
            "subscribeLabels backfill (one client, raw WebSocket, separate process)",
            ["run", "labels", "seconds", "labels/s", "target", "check"],
            backfill_rows,
        )
    if live_rows:
        h.print_table(
            "subscribeLabels live latency: LabelWriter.write() called → frame read by subscriber",
            ["subscribers", "labels", "emit rate", "frames got", "p50 ms", "p99 ms", "max ms", "closed", "target"],
            live_rows,
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    h.add_common_args(p)
    p.add_argument("--backfill", type=int, default=200_000, help="labels to backfill; 0 skips (default %(default)s)")
    p.add_argument("--repeat", type=int, default=2, help="backfill runs (default %(default)s)")
    p.add_argument(
        "--subscribers",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[1, 100, 1000],
        help="live subscriber counts, comma list; empty skips (default 1,100,1000)",
    )
    p.add_argument("--labels", type=int, default=200, help="labels emitted per live run (default %(default)s)")
    p.add_argument("--interval", type=float, default=0.02, help="seconds between emits (default %(default)s)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait after the last emit (default 2)")
    return p.parse_args(argv)


if __name__ == "__main__":
    h.use_uvloop()
    asyncio.run(main(parse_args()))
