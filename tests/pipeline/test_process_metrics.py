"""`labeler worker` and `labeler ingest` as their own processes serve their own counters on their metrics listener
(labeler.xrpc.metrics_listener): a job pushed through a worker moves the worker's fetch, hash, match, decision and
label counters, scraped over HTTP, and events read by ingest move its source counters. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.server import free_port

import labeler
from labeler.config import ConfigError
from labeler.pipeline.hasher import hash_image
from labeler.service import Labeler

from .blob_server import PdsWorld
from .conftest import FAST_PIPELINE
from .corpus import encode, structured_rgb
from .harness import Harness, eventually, pipeline_toml
from .stream_standins import StreamStandin
from .stream_standins import eventually as connected
from .test_sources_firehose import publish_sample

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient, url: str) -> Samples:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels` (0 when there is none)."""
    return sum(v for (n, have), v in samples.items() if n == name and set(labels.items()) <= have)


@asynccontextmanager
async def labeler_process(*args: str, env: dict[str, str], ready: bytes) -> AsyncIterator[asyncio.subprocess.Process]:
    """`labeler <args>` until the block ends, then SIGTERM; the block starts once its output has shown `ready`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labeler", *args, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = b""
    try:
        while ready not in seen:
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), 60)
            except TimeoutError:
                raise AssertionError(f"no {ready!r} from labeler {args}: {seen.decode()}") from None
            assert line, seen.decode()
            seen += line
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rest = (await asyncio.wait_for(proc.communicate(), 60))[0]
    assert proc.returncode == 0, (seen + rest).decode()


def process_env(settings: Any, **more: str) -> dict[str, str]:
    """The process's environment: these settings, and the code this test imports (the tests run from a temporary
    directory, where `python -m labeler` would find only the installed package)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELER_")}
    env.update(LABELER_DATABASE_URL=settings.database_url, LABELER_KEYS_DIR=str(settings.keys_dir), **more)
    env["PYTHONPATH"] = str(Path(labeler.__file__).resolve().parents[1])
    return env


async def test_a_worker_process_serves_the_counters_its_job_moves(
    pds_world: PdsWorld, make_settings: Any, tmp_path: Path
) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    settings = harness.settings()
    image = encode(structured_rgb(160, 120, seed=42), "PNG")
    spec = harness.post(pds_world.account(), "p1", image)
    async with harness.running(settings, workers=0) as labeler:  # migrates, makes the key, fills the bank
        await harness.bank(labeler, "KNOWN", [hash_image(image).hash])
    config = tmp_path / "worker.toml"
    config.write_text(pipeline_toml(FAST_PIPELINE))
    port = free_port()
    env = process_env(
        settings, LABELER_CONFIG=str(config), LABELER_DID=settings.did, LABELER_PLC_URL=pds_world.plc_url,
        LABELER_ALLOW_PRIVATE_FETCH="true", LABELER_METRICS_PORT=str(port),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    with pds_world.pds_running():
        async with (
            labeler_process("worker", env=env, ready=f"metrics at {url}".encode()),
            httpx.AsyncClient(timeout=30) as client,
        ):
            before = await scrape(client, url)
            assert total(before, "labeler_pipeline_job_outcomes_total") == 0
            assert total(before, "labeler_labels_emitted_total") == 0
            # Queued from another process, as `serve` or `ingest` would (no lock: the worker holds SQLite's).
            queuer = Labeler(settings, with_hub=False)
            await queuer.start(create_dev_key=False)
            try:
                assert await queuer.pipeline.jobs.enqueue([spec]) == 1
            finally:
                await queuer.aclose()

            async def matched() -> bool:
                return total(await scrape(client, url), "labeler_pipeline_job_outcomes_total", outcome="match") == 1

            await eventually(matched, within=60, what="the worker's match on its /metrics")
            after = await scrape(client, url)
    assert total(after, "labeler_pipeline_job_outcomes_total") == 1
    assert total(after, "labeler_pipeline_hash_seconds_count", media="image") == 1
    assert total(after, "labeler_pipeline_matches_total", signal_type="pdq") == 1
    assert total(after, "labeler_pipeline_decisions_total") >= 1
    assert total(after, "labeler_labels_emitted_total", kind="label") == 1
    assert total(after, "labeler_actions_total", state="done") >= 1
    assert total(after, "labeler_pipeline_fetch_errors_total") == 0


async def test_an_ingest_process_serves_its_source_counters(
    standin: tuple[StreamStandin, str], make_settings: Any, tmp_path: Path
) -> None:
    control, firehose = standin
    settings = make_settings(firehose_url=firehose)
    port = free_port()
    env = process_env(settings, LABELER_FIREHOSE_URL=firehose, LABELER_METRICS_HOST="127.0.0.1")
    url = f"http://127.0.0.1:{port}/metrics"
    async with (
        labeler_process("ingest", "--metrics-port", str(port), env=env, ready=f"metrics at {url}".encode()),
        httpx.AsyncClient(timeout=30) as client,
    ):
        await connected(lambda: len(control.connections) == 1)
        before = await scrape(client, url)
        assert total(before, "labeler_source_connects_total", kind="firehose") == 1
        assert total(before, "labeler_source_events_total") == 0
        publish_sample(control)

        async def read() -> bool:
            return total(await scrape(client, url), "labeler_source_jobs_total", kind="firehose") == 3

        await eventually(read, within=60, what="ingest's jobs on its /metrics")
        after = await scrape(client, url)
    assert total(after, "labeler_source_events_total", kind="firehose") > 0
    assert ("labeler_source_lag_seconds", frozenset({("source", firehose_name(after)), ("kind", "firehose")})) in after


def firehose_name(samples: Samples) -> str:
    [name] = {dict(labels)["source"] for n, labels in samples if n == "labeler_source_events_total"}
    return name


async def test_a_taken_metrics_port_stops_the_worker_before_it_starts(make_settings: Any) -> None:
    settings = make_settings()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "labeler", "worker", "--metrics-port", str(port), env=process_env(settings),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output = (await asyncio.wait_for(proc.communicate(), 60))[0].decode()
    assert proc.returncode == 1, output
    assert f"Error: cannot serve metrics on 127.0.0.1:{port} (LABELER_METRICS_PORT)" in output
    assert "Address already in use" in output
    assert "Traceback" not in output and "hash pool" not in output  # refused before the work started


def test_a_metrics_port_out_of_range_is_a_config_error(make_settings: Any) -> None:
    with pytest.raises(ConfigError, match="LABELER_METRICS_PORT must be a port"):
        make_settings(metrics_port=65536)
    assert make_settings(metrics_port=0).metrics_port == 0  # no listener
