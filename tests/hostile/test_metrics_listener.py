"""The metrics listener of `labeler worker` / `labeler ingest` (labeler.xrpc.metrics_listener) under hostile input:
only `GET /metrics` and `GET /livez` answer 200; every probe of the fuzz table (every route the API serves, with
its hostile inputs) gets a 404 or 405 in the XRPC error shape, never a 5xx; its connections are capped and its
request heads bounded like the API's. On SQLite and PostgreSQL, like the other hostile tests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from labeler.service import Labeler
from labeler.testing import LiveServer
from labeler.xrpc.http_protocol import MAX_HEAD_BYTES
from labeler.xrpc.metrics_listener import MAX_CONNECTIONS, bind, metrics_app, metrics_listener

from . import raw
from .callers import Callers
from .test_fuzz import ROUTES, Fuzzer, app_routes, probes

LISTENER_ROUTES = {("http", "/metrics"), ("http", "/livez")}


@contextlib.asynccontextmanager
async def listening(labeler: Labeler) -> AsyncIterator[LiveServer]:
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    async with metrics_listener(labeler, sock) as app:
        yield LiveServer(labeler, port, app)


def test_the_listener_serves_only_metrics_and_livez_and_the_fuzz_table_has_them(labeler: Labeler) -> None:
    served = app_routes(metrics_app(labeler).routes)
    assert served == LISTENER_ROUTES
    assert served <= ROUTES.keys()  # a route added to the listener needs a fuzz generator too


async def test_only_get_metrics_and_livez_answer(labeler: Labeler) -> None:
    async with listening(labeler) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        scraped = await client.get("/metrics")
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        names = {family.name for family in text_string_to_metric_families(scraped.text)}
        assert {"labeler_label_commits", "labeler_pipeline_job_outcomes", "labeler_actions"} <= names
        assert (await client.head("/metrics")).status_code == 200
        assert (await client.get("/livez")).json() == {"status": "alive"}
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            for path in ("/metrics", "/livez"):
                refused = await client.request(method, path, content=b"x" * 1000)
                assert (refused.status_code, refused.json()["error"]) == (405, "MethodNotSupported"), (method, path)
        for path in ("/", "/metrics/", "/metrics/x", "/xrpc/_health", "/console/", "/METRICS", "/%00", "/x" * 300):
            missing = await client.get(path)
            assert (missing.status_code, missing.json()["error"]) == (404, "NotFound"), path


@pytest.mark.slow
async def test_no_probe_of_the_fuzz_table_gets_a_server_error(
    labeler: Labeler, callers: Callers, caplog: pytest.LogCaptureFixture
) -> None:
    todo = probes(len(ROUTES) * 6)  # every route of the API, six hostile variants each
    async with listening(labeler) as server, httpx.AsyncClient(timeout=60) as client:
        fuzzer = Fuzzer(server, client, callers, console={})
        with caplog.at_level(logging.ERROR, logger="labeler"):
            for probe in todo:
                await fuzzer.send(probe, len(fuzzer.statuses))
        assert not fuzzer.failures, "\n".join(fuzzer.failures[:20])
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert fuzzer.statuses["2xx"] > 0 and fuzzer.statuses["4xx"] > len(todo) // 2, fuzzer.statuses
        assert (await client.get(f"{server.url}/metrics")).status_code == 200


async def test_heads_and_connections_are_bounded(labeler: Labeler) -> None:
    async with listening(labeler) as server:
        async with raw.connection(server) as (reader, writer):
            writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n")
            assert raw.status(await raw.until_closed(reader)) == 431
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(MAX_CONNECTIONS):
                reader, writer = await stack.enter_async_context(raw.connection(server))
                writer.write(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")  # kept open (keep-alive) once answered
                await writer.drain()
                assert b" 200 " in await asyncio.wait_for(reader.readuntil(b"\r\n"), raw.WAIT)
            async with raw.connection(server) as (reader, _writer):
                refused = await raw.until_closed(reader)
                assert raw.status(refused) == 503 and b"retry-after" in refused.lower()
        async with httpx.AsyncClient(timeout=30) as client:  # the held connections gone, it answers again
            assert (await client.get(f"{server.url}/metrics")).status_code == 200
