"""Shared benchmark plumbing: machine facts, a throw-away labeler on SQLite or PostgreSQL (served on real uvicorn
by `labeler.testing.serve_labeler`), fast bulk loading of properly signed labels, a minimal WebSocket client, and
result tables.

Nothing here asserts on time: benchmarks print figures. Import as `from bench import _harness` or run the bench
scripts directly (`python bench/bench_query.py`); both work.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import multiprocessing
import os
import platform
import shutil
import socket
import statistics
import struct
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labeler.config import Settings, load_settings
from labeler.keys import Keyring
from labeler.protocol.crypto import SigningKey
from labeler.protocol.label import Label
from labeler.service import Labeler
from labeler.store.engine import create_engine
from labeler.store.migrate import upgrade

DEFAULT_PG_URL = os.environ.get("LABELER_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN_PASSWORD = "bench-admin-password"
BENCH_DID = "did:plc:benchlabelerbenchlabel22"
VALUES = ("spam", "nudity", "gore", "hash-match")
B32 = "abcdefghijklmnopqrstuvwxyz234567"


# --- machine and output --------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n## {title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def print_machine(args: argparse.Namespace | None = None) -> None:
    info = machine()
    rows = [[k, v] for k, v in info.items()]
    if args is not None:
        rows.append(["db", args.db])
    print_table("machine", ["", ""], rows)


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def latency_summary(samples: Sequence[float]) -> tuple[str, str, str, str]:
    """(median, p99, max, mean) in milliseconds."""
    if not samples:
        return ("-", "-", "-", "-")
    return (
        ms(statistics.median(samples)),
        ms(percentile(samples, 99)),
        ms(max(samples)),
        ms(statistics.fmean(samples)),
    )


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite", help="database (default sqlite)")
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help="PostgreSQL server; a fresh database is created on it and dropped afterwards (default %(default)s)",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep files here instead of a temp dir that is removed"
    )


# --- environment: temp dir, settings, fresh database ---------------------------------------------------------


@dataclass
class BenchEnv:
    workdir: Path
    database_url: str
    db: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": self.database_url,
            "keys_dir": str(self.workdir / "keys"),
            "admin_password": ADMIN_PASSWORD,
            "did": BENCH_DID,
            "public_url": "http://localhost:8080",
            "log_level": "warning",
            # Every benchmark client connects from 127.0.0.1.
            "max_subscribers_per_client": 100_000,
        }
        values.update(self.overrides)
        values.update(overrides)
        return load_settings(env={}, **values)


async def _pg_admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def bench_env(args: argparse.Namespace) -> AsyncIterator[BenchEnv]:
    """A work dir plus an empty, migrated database (SQLite file, or a fresh PostgreSQL database dropped after)."""
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="labeler-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    pg_name = None
    try:
        if args.db == "sqlite":
            url = f"sqlite+aiosqlite:///{workdir / 'labeler.db'}"
        else:
            pg_name = f"labeler_bench_{uuid.uuid4().hex[:10]}"
            await _pg_admin(args.pg_url, f'CREATE DATABASE "{pg_name}"')
            url = args.pg_url.rsplit("/", 1)[0] + f"/{pg_name}"
            url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
        engine = create_engine(url)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        env = BenchEnv(workdir=workdir, database_url=url, db=args.db)
        Keyring.open(workdir / "keys").ensure_active()
        yield env
    finally:
        if pg_name is not None:
            with contextlib.suppress(Exception):
                await _pg_admin(args.pg_url, f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.asynccontextmanager
async def running_labeler(settings: Settings) -> AsyncIterator[Labeler]:
    service = Labeler(settings)
    await service.start()
    try:
        yield service
    finally:
        await service.aclose()


class ServerTimer:
    """ASGI wrapper recording, per HTTP request, the server's wall time from the call to the last body byte
    handed to uvicorn (what the server spends, without the client's process), and the CPU time this process
    used meanwhile (all threads; only meaningful with one request in flight). Wall far above CPU means the
    process was waiting: for the disk, or for a core taken by something else on a busy machine."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.samples: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.label: str | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or self.label is None:
            await self.app(scope, receive, send)
            return
        t0, c0 = time.perf_counter(), time.process_time()
        await self.app(scope, receive, send)
        self.samples.setdefault(self.label, []).append(time.perf_counter() - t0)
        self.cpu.setdefault(self.label, []).append(time.process_time() - c0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)


def use_uvloop() -> None:
    """Run the benchmark's event loop on uvloop, as `labeler serve` (uvicorn's `auto` loop) does."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# --- child processes (load generators and subscribers run apart from the server: 2 cores) --------------------


def spawn(target: Any, *args: Any) -> tuple[multiprocessing.process.BaseProcess, Any]:
    """Start `target(conn, *args)` in a fresh process; returns (process, our end of a pipe)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, *args), daemon=True)
    proc.start()
    child.close()
    return proc, parent


async def recv(conn: Any, wait: float | None = None) -> Any:
    """Await the next message from a child (at most `wait` seconds) without blocking the event loop."""
    if wait is not None and not await asyncio.to_thread(conn.poll, wait):
        raise TimeoutError("child process sent nothing in time")
    return await asyncio.to_thread(conn.recv)


# --- synthetic labels and bulk loading ------------------------------------------------------------------------


def did_for(n: int) -> str:
    """A stable, well-formed did:plc (24 base32 chars) for subject number `n`, scattered in sort order."""
    digest = hashlib.blake2b(n.to_bytes(8, "big"), digest_size=15).digest()
    return "did:plc:" + base64.b32encode(digest).decode().lower()[:24]


def subject_for(n: int) -> str:
    """Subject `n`: 30 % accounts (bare DIDs), 70 % posts."""
    did = did_for(n)
    if n % 10 < 3:
        return did
    return f"{did}/app.bsky.feed.post/3k{n:011d}".replace("did:", "at://did:", 1)


def label_fields(i: int) -> tuple[str, str]:
    """Label number `i`: (uri, val). Two labels per subject, with different values."""
    subject = i // 2
    return subject_for(subject), VALUES[(i % 2) + 2 * (subject % 2)]


def _sign_chunk(args: tuple[bytes, str, str, int, int]) -> list[bytes]:
    pem, src, cts, start, stop = args
    key = _worker_key(pem)
    out = []
    for i in range(start, stop):
        uri, val = label_fields(i)
        out.append(Label(src=src, uri=uri, val=val, cts=cts).signed(key).sig)  # type: ignore[arg-type]
    return out


_KEYS: dict[bytes, SigningKey] = {}


def _worker_key(pem: bytes) -> SigningKey:
    if pem not in _KEYS:
        _KEYS[pem] = SigningKey.from_pem(pem)
    return _KEYS[pem]


def signed_rows(
    settings: Settings, start: int, stop: int, first_seq: int, chunk: int = 20_000
) -> Iterator[list[tuple[Any, ...]]]:
    """Rows (seq, src, uri, cid, val, neg, cts, exp, sig, key_id) for labels start..stop-1, really signed with the
    active key, in chunks; signing runs in a process pool over all cores."""
    keyring = Keyring.open(settings.keys_dir)
    info, _key = keyring.active()
    pem = (settings.keys_dir / info.file).read_bytes()
    cts = "2026-11-01T12:00:00.000Z"
    jobs = [(pem, settings.did, cts, a, min(a + chunk, stop)) for a in range(start, stop, chunk)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(os.cpu_count() or 1) as pool:
        for (_pem, _src, _cts, a, b), sigs in zip(jobs, pool.imap(_sign_chunk, jobs), strict=True):
            rows = []
            for i, sig in zip(range(a, b), sigs, strict=True):
                uri, val = label_fields(i)
                rows.append((first_seq + i, settings.did, uri, "", val, False, cts, None, sig, info.id))
            yield rows


def _seq_base() -> int:
    # Below "now" in microseconds so the writer's max(head + 1, now_us) keeps working after the load.
    return time.time_ns() // 1000 - 50_000_000


async def bulk_load(settings: Settings, start: int, stop: int) -> float:
    """Insert labels start..stop-1 (signed, current state, no audit events) straight into the `labels` table;
    run with no Labeler serving the database. Returns seconds taken."""
    t0 = time.perf_counter()
    if settings.is_sqlite:
        await asyncio.to_thread(_bulk_load_sqlite, settings, start, stop)
    else:
        await _bulk_load_pg(settings, start, stop)
    return time.perf_counter() - t0


def _existing_base_sqlite(conn: Any) -> int | None:
    row = conn.execute("SELECT min(seq) FROM labels").fetchone()
    return row[0] if row and row[0] is not None else None


def _bulk_load_sqlite(settings: Settings, start: int, stop: int) -> None:
    import sqlite3

    path = settings.database_url.split("///", 1)[1]
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")
        base = _existing_base_sqlite(conn)
        base = (base if base is not None else _seq_base()) if start else _seq_base()
        for rows in signed_rows(settings, start, stop, base):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO labels (seq, src, uri, cid, val, neg, cts, exp, sig, key_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def _bulk_load_pg(settings: Settings, start: int, stop: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(settings.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        base = await conn.fetchval("SELECT min(seq) FROM labels")
        base = (base if base is not None else _seq_base()) if start else _seq_base()
        columns = ["seq", "src", "uri", "cid", "val", "neg", "cts", "exp", "sig", "key_id"]
        loop = asyncio.get_running_loop()
        chunks = signed_rows(settings, start, stop, base)
        while True:
            rows = await loop.run_in_executor(None, next, chunks, None)
            if rows is None:
                break
            await conn.copy_records_to_table("labels", records=rows, columns=columns)
        await conn.execute("ANALYZE labels")
    finally:
        await conn.close()


def loaded_uri(i: int) -> str:
    return label_fields(i)[0]


# --- a minimal WebSocket client (cheap enough that the server, not the client, is what is measured) ----------


def read_http_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read an HTTP message head (the WebSocket handshake, either side): (head, whatever followed it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise ConnectionError("closed during handshake")
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


class RawWebSocket:
    """RFC 6455 client over a plain socket: handshake, then parse unmasked server frames. Binary messages are
    returned as (receive_time, payload); no extensions are negotiated. Control frames other than close are
    skipped (the server sends none unprompted besides pings, which we leave unanswered in short runs)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.closed = False

    @classmethod
    def connect(cls, host: str, port: int, path: str, timeout: float = 30.0) -> RawWebSocket:
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        sock.sendall(request.encode())
        head, rest = read_http_head(sock)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head[:200]!r}")
        ws = cls(sock)
        ws.buf += rest
        return ws

    def parse(self) -> list[tuple[int, bytes]]:
        """Pop every complete frame in the buffer: list of (opcode, payload)."""
        out = []
        buf = self.buf
        pos = 0
        n = len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if n - pos < 4:
                    break
                length = struct.unpack_from(">H", buf, pos + 2)[0]
                head = 4
            elif length == 127:
                if n - pos < 10:
                    break
                length = struct.unpack_from(">Q", buf, pos + 2)[0]
                head = 10
            if n - pos < head + length:
                break
            out.append((b0 & 0x0F, bytes(buf[pos + head : pos + head + length])))
            pos += head + length
        if pos:
            del buf[:pos]
        return out

    def feed(self, data: bytes) -> None:
        self.buf += data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            # masked close frame, code 1000
            mask = os.urandom(4)
            payload = struct.pack(">H", 1000)
            masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            self.sock.sendall(bytes((0x88, 0x80 | len(payload))) + mask + masked)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed = True


# `#labels` frame: 15-byte header, then body a2 63"seq" <uint> ...; seq is a CBOR uint at offset 20.
_SEQ_OFFSET = 15 + 1 + 4


def frame_seq(payload: bytes) -> int:
    """The seq of a `#labels` frame without decoding the CBOR (checked against the header bytes)."""
    if payload[:15] != b"\xa2atg#labelsbop\x01":
        raise ValueError(f"not a #labels frame: {payload[:24]!r}")
    ai = payload[_SEQ_OFFSET]
    if ai == 0x1B:
        return struct.unpack_from(">Q", payload, _SEQ_OFFSET + 1)[0]
    if ai == 0x1A:
        return struct.unpack_from(">I", payload, _SEQ_OFFSET + 1)[0]
    if ai == 0x19:
        return struct.unpack_from(">H", payload, _SEQ_OFFSET + 1)[0]
    if ai == 0x18:
        return payload[_SEQ_OFFSET + 1]
    if ai < 0x18:
        return ai
    raise ValueError("bad seq")
