"""`/metrics` scraped over real HTTP after real work: labels, a live subscriber, pipeline outcomes and errors."""

from __future__ import annotations

from typing import Any

import httpx
import websockets
from prometheus_client.parser import text_string_to_metric_families

from labeler.pipeline.hasher import hash_image
from labeler.pipeline.jobs import ImageRef, JobSpec
from labeler.testing import serve_labeler

from .blob_server import PdsWorld
from .corpus import encode, structured_rgb
from .harness import Harness, all_done, eventually

BANKED = encode(structured_rgb(320, 240, seed=11), "PNG")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(scraped: dict[Any, float], name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_expose_labels_stream_and_pipeline_figures(pds_world: PdsWorld, make_settings: Any) -> None:
    harness = Harness(pds_world, make_settings, "embedded", None)
    did = harness.world.account()
    banked = harness.post(did, "banked", BANKED)
    garbage = harness.post(did, "garbage", b"this is not an image at all")
    missing = JobSpec("firehose", f"at://{did}/app.bsky.feed.post/missing", None,
                      ImageRef(did, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"))  # fmt: skip
    with harness.world.pds_running():
        async with harness.running() as labeler, serve_labeler(labeler) as live:
            await harness.bank(labeler, "KNOWN", [hash_image(BANKED).hash])
            async with websockets.connect(f"{live.ws_url}/xrpc/com.atproto.label.subscribeLabels") as ws:
                await eventually(lambda: _subscribed(labeler), what="subscriber registered")
                await labeler.pipeline.jobs.enqueue([banked, garbage, missing])
                await all_done(labeler, 3)
                await ws.recv()  # the pipeline's label reached the live subscriber
                async with httpx.AsyncClient(base_url=live.url) as client:
                    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    scraped = samples(response.text)
    assert value(scraped, "labeler_labels_emitted_total", kind="label") == 1
    assert value(scraped, "labeler_label_commits_total") >= 1
    assert value(scraped, "labeler_stream_subscribers") == 1
    assert value(scraped, "labeler_stream_head_seq") > 0
    assert value(scraped, "labeler_pipeline_job_outcomes_total", outcome="match", reason="label") == 1
    assert sum(v for (name, labels), v in scraped.items() if name == "labeler_pipeline_job_outcomes_total") == 3
    assert sum(v for (name, _), v in scraped.items() if name == "labeler_pipeline_fetch_errors_total") >= 1
    assert value(scraped, "labeler_pipeline_matcher_seconds_count", matcher="embedded") >= 1
    assert value(scraped, "labeler_pipeline_hash_seconds_count", media="image") >= 1
    assert value(scraped, "labeler_pipeline_matches_total", signal_type="pdq") == 1
    assert any(name == "labeler_pipeline_jobs" for name, _ in scraped)


async def _subscribed(labeler: Any) -> bool:
    return bool(labeler.hub.subscribers)
