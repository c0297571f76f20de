"""Two `labeler worker` processes drain one job queue on PostgreSQL, and no job is done twice (issue 6)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from labeler.pipeline.hasher import hash_image
from labeler.store.schema import label_events

from .blob_server import PdsWorld
from .conftest import FAST_PIPELINE
from .corpus import encode, structured_rgb
from .harness import Harness, pipeline_toml

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
JOBS = 40


async def test_two_worker_processes_share_the_queue(
    pds_world: PdsWorld, make_settings: Any, database_url: str, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("several worker processes need PostgreSQL (SQLite is single-process by design)")
    harness = Harness(pds_world, make_settings, "embedded", None)
    settings = harness.settings()
    did = pds_world.account()
    images = [encode(structured_rgb(160, 120, seed=100 + i), "PNG") for i in range(JOBS)]
    specs = [harness.post(did, f"p{i}", data) for i, data in enumerate(images)]
    banked = {spec.subject_uri for spec in specs[::2]}
    async with harness.running(settings, workers=0) as labeler:  # queue only: no in-process workers
        await harness.bank(labeler, "KNOWN", [hash_image(images[i]).hash for i in range(0, JOBS, 2)])
        assert await labeler.pipeline.jobs.enqueue(specs) == JOBS

    config = tmp_path / "worker.toml"
    config.write_text(pipeline_toml({**FAST_PIPELINE, "lease_seconds": 60}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELER_")}
    env.update(
        LABELER_CONFIG=str(config), LABELER_DATABASE_URL=database_url, LABELER_KEYS_DIR=str(settings.keys_dir),
        LABELER_DID=settings.did, LABELER_PLC_URL=pds_world.plc_url, LABELER_ALLOW_PRIVATE_FETCH="true",
    )  # fmt: skip
    with pds_world.pds_running():
        started = time.monotonic()
        command = [sys.executable, "-m", "labeler", "worker", "--drain", "--workers", "2"]
        pipe = asyncio.subprocess.PIPE
        procs = [
            await asyncio.create_subprocess_exec(*command, env=env, stdout=pipe, stderr=asyncio.subprocess.STDOUT)
            for _ in range(2)
        ]
        outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), timeout=240)
    for proc, (out, _) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out.decode()
    assert time.monotonic() - started < 240

    async with harness.running(settings, workers=0) as labeler:
        jobs = [job for spec in specs for job in await labeler.pipeline.jobs.for_subject(spec.subject_uri)]
        async with labeler.engine.connect() as conn:
            events = (await conn.execute(sa.select(label_events.c.uri).where(label_events.c.via == "pipeline"))).all()
    assert len(jobs) == JOBS and all(job.status == "done" for job in jobs)
    assert all(job.attempts == 1 for job in jobs), "a job was claimed more than once"
    assert {job.subject_uri for job in jobs if job.outcome == "match"} == banked
    assert sorted(uri for (uri,) in events) == sorted(banked), "every banked post labelled exactly once"
