"""The Actioner on Bluesky's reference network: takedowns on the real PDS and their reversal, reports arriving at a
real Ozone, the admin API's faults, and the child-safety default that publishes nothing before a person confirms.

Images are posted to the devnet PDS and their jobs queued directly (the firehose path is test_pipeline_e2e's);
the labeler fetches each blob from the PDS, hashes it, matches an embedded bank and acts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from pipeline.corpus import encode, structured_rgb
from support.gate_proxy import GateProxy
from support.serve_process import ServeProcess

from labeler.config import Settings
from labeler.pipeline.actions.config import load_actions
from labeler.pipeline.actions.doctor import takedown_finding
from labeler.pipeline.actions.model import Action
from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.jobs import ImageRef, JobSpec
from labeler.protocol.frames import decode_frame
from labeler.service import Labeler
from labeler.testing import serve_labeler

from .harness import Devnet, Ozone, Post, post_image

pytestmark = pytest.mark.devnet

BANK = "E2E_ACTIONS"
TIMEOUT_S = 60.0
FAST = {"retry_base_seconds": 0.2, "retry_cap_seconds": 1.0}
PIPELINE = {"poll_seconds": 0.05, "bank_poll_seconds": 0.1, "hash_processes": 1, "stop_timeout_seconds": 2}
CSAM_REASON = "tools.ozone.report.defs#reasonChildSafetyCSAM"
ADMIN = ("admin", "test-admin-password")

_seed = iter(range(500, 10_000))


def fresh_image() -> bytes:
    """An image no other test posted (the PDS dedupes blobs; the bank must hold exactly this one's hash)."""
    return encode(structured_rgb(320, 240, seed=next(_seed)), "PNG")


def secret_file(directory: Path, name: str, secret: str) -> str:
    path = directory / name
    path.write_text(secret + "\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return str(path)


@pytest.fixture
def configure(make_settings: Any, devnet: Devnet, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a labeler whose DID is the devnet's `labeler` account (so reports come from it)."""

    def make(*, actions: dict[str, Any], rules: list[dict[str, Any]] | None = None, **over: Any) -> Settings:
        extra: dict[str, Any] = {"actions": {**FAST, **actions}, "pipeline": PIPELINE}
        if rules is not None:
            extra["policy"] = {"rules": rules}
        values = {
            "plc_url": devnet.plc_url,
            "allow_private_fetch": True,
            "did": devnet.labeler.did,
            "workers": 1,
            "extra": extra,
        }
        return make_settings(**{**values, **over})

    return make


def takedown_config(
    devnet: Devnet, tmp_path: Path, *, url: str | None = None, password: str = "admin-pass"
) -> dict[str, Any]:
    return {
        "pds_url": url or devnet.pds_url,
        "admin_password_file": secret_file(tmp_path, f"pds-admin-{next(_seed)}", password),
        "hosts": [devnet.pds_public_url],
        "timeout": 1.0,
    }


def report_config(devnet: Devnet, ozone: Ozone, tmp_path: Path, via: str) -> dict[str, Any]:
    return {
        "service_did": ozone.did,
        "pds_url": devnet.pds_url,
        "identifier": devnet.labeler.handle,
        "password_file": secret_file(tmp_path, "account", devnet.labeler.password),
        "via": via,
    }


async def banked_post(devnet: Devnet, labeler: Labeler, author: str = "bob") -> Post:
    """Post a new image as `author`, bank its hash, and queue its job once the labeler can match the hash.

    A bank change reaches a loaded index at its next replay of the change log (`bank_poll_seconds`, README), so a
    job looked up before that finds nothing, ends as no-match and queues no action."""
    image = fresh_image()
    pdq = hash_image(image).hash
    names = {b.name for b in await labeler.pipeline.banks.all_banks()}
    if BANK not in names:
        await labeler.pipeline.banks.create(BANK)
    await labeler.pipeline.banks.add_entries(BANK, [EntryInput(pdq, external_id="e2e")])

    async def matchable() -> bool:
        return any(m.bank == BANK for m in await labeler.pipeline.matcher.lookup(pdq, max_distance=0))

    await until(matchable, "the banked hash in the labeler's matcher")
    post: Post = await asyncio.to_thread(post_image, devnet, author, image, "an image")
    spec = JobSpec("manual", post.uri, post.cid, ImageRef(post.did, post.blob_cid, "image/png"))
    await labeler.pipeline.jobs.enqueue([spec])
    return post


async def until(check: Callable[[], Awaitable[Any]], what: str, within: float = TIMEOUT_S) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while not (value := await check()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return value


async def settled(labeler: Labeler, uri: str, count: int) -> list[Action]:
    """The subject's actions once there are `count` and all have finished."""

    async def check() -> list[Action] | None:
        rows = await labeler.pipeline.actioner.outbox.list(subject_uri=uri)
        return rows if len(rows) >= count and all(a.finished for a in rows) else None

    rows: list[Action] = await until(check, f"{count} finished actions on {uri}")
    return rows


async def served(devnet: Devnet, post: Post) -> tuple[int, int]:
    """(getRecord status, getBlob status) as anyone asking the PDS gets them."""
    async with httpx.AsyncClient(base_url=devnet.pds_url, timeout=10) as http:
        rkey = post.uri.rsplit("/", 1)[1]
        record = await http.get(
            "/xrpc/com.atproto.repo.getRecord",
            params={"repo": post.did, "collection": "app.bsky.feed.post", "rkey": rkey},
        )
        blob = await http.get("/xrpc/com.atproto.sync.getBlob", params={"did": post.did, "cid": post.blob_cid})
    if record.status_code != 200:
        assert record.json()["error"] == "RecordNotFound", record.text
    if blob.status_code != 200:
        assert "Blob not found" in blob.json()["message"], blob.text
    return record.status_code, blob.status_code


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only here: the outbox's PostgreSQL paths are covered in tests/actions, and e2e time is dear."""
    return f"sqlite+aiosqlite:///{tmp_path / 'labeler.db'}"


class Running:
    """Labelers started by a test (with one worker and the outbox runner), stopped at its end."""

    def __init__(self) -> None:
        self.started: list[Labeler] = []

    async def start(self, settings: Settings) -> Labeler:
        labeler = Labeler(settings)
        await labeler.start(workers=1)
        self.started.append(labeler)
        return labeler

    async def stop(self, labeler: Labeler) -> None:
        self.started.remove(labeler)
        await labeler.aclose()


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    labelers = Running()
    yield labelers
    for labeler in list(labelers.started):
        await labelers.stop(labeler)


TAKEDOWN_RULE = {
    "name": "takedown", "banks": [BANK], "labels": ["!hide"], "label_distance": -1, "review_distance": 31,
    "takedown_distance": 10,
}  # fmt: skip


async def test_takedown_on_the_pds_then_lifted_by_rejection_and_by_negation(
    devnet: Devnet, configure: Callable[..., Settings], tmp_path: Path, running: Running
) -> None:
    settings = configure(actions={"takedown": takedown_config(devnet, tmp_path)}, rules=[TAKEDOWN_RULE])
    labeler = await running.start(settings)
    decisions = labeler.pipeline.decisions

    # 1. A match: the record and its blob are taken down at once, and a person gets to look.
    first = await banked_post(devnet, labeler)
    review, record, blob = await settled(labeler, first.uri, 3)
    assert [(a.kind, a.state, a.outcome) for a in (review, record, blob)] == [
        ("review", "done", "queued"), ("takedown", "done", "applied"), ("takedown", "done", "applied"),
    ]  # fmt: skip
    assert record.params["subject"] == {"$type": "com.atproto.repo.strongRef", "uri": first.uri, "cid": first.cid}
    assert blob.params["subject"]["$type"] == "com.atproto.admin.defs#repoBlobRef"
    assert await served(devnet, first) == (400, 400)

    # 2. The person says it is not a match: the takedown is lifted and the PDS serves both again.
    verdict = await decisions.reject(review.result["review_item"], actor="did:plc:moderator", note="a sunset")
    lifted = [a for a in verdict.actions if a.kind == "takedown"]
    assert [(a.op, a.state, a.outcome, a.reverses) for a in lifted] == [
        ("reverse", "done", "lifted", record.id), ("reverse", "done", "lifted", blob.id),
    ]  # fmt: skip
    assert await served(devnet, first) == (200, 200)

    # 3. Another match, confirmed (the `!hide` label goes up), then a moderator negates the label through
    #    Ozone's emitEvent: that reverses the match too.
    second = await banked_post(devnet, labeler)
    review, *_ = await settled(labeler, second.uri, 3)
    assert await served(devnet, second) == (400, 400)
    confirmed = await decisions.confirm(review.result["review_item"], actor="did:plc:moderator")
    assert [(a.kind, a.state) for a in confirmed.actions] == [
        ("label", "done"),
        ("takedown", "done"),
        ("takedown", "done"),
    ]
    async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        labels = (await http.get("/xrpc/com.atproto.label.queryLabels", params={"uriPatterns": second.uri})).json()
        assert [lb["val"] for lb in labels["labels"]] == ["!hide"]
        event = {
            "$type": "tools.ozone.moderation.defs#modEventLabel",
            "createLabelVals": [],
            "negateLabelVals": ["!hide"],
        }
        negate = {
            "event": event,
            "subject": {"$type": "com.atproto.repo.strongRef", "uri": second.uri, "cid": second.cid},
            "createdBy": "did:plc:moderator",
        }  # fmt: skip
        answer = await http.post("/xrpc/tools.ozone.moderation.emitEvent", json=negate, auth=ADMIN)
        assert answer.status_code == 200, answer.text
    assert await served(devnet, second) == (200, 200)
    reversals = [a for a in await labeler.pipeline.actioner.outbox.list(subject_uri=second.uri) if a.op == "reverse"]
    assert sorted((a.kind, a.state, a.outcome) for a in reversals) == [
        ("label", "skipped", "nothing-to-reverse"),  # the moderator's negation already took it down
        ("review", "skipped", "already-decided"),
        ("takedown", "done", "lifted"), ("takedown", "done", "lifted"),
    ]  # fmt: skip
    assert all(a.actor == "did:plc:moderator" for a in reversals)


@pytest.mark.parametrize("via", ["service-auth", "proxy"])
async def test_a_report_arrives_at_ozone_from_our_account(
    via: str, devnet: Devnet, ozone: Ozone, configure: Callable[..., Settings], tmp_path: Path, running: Running
) -> None:
    rule = {
        "name": "report", "banks": [BANK], "labels": ["!hide"], "label_distance": -1, "review_distance": -1,
        "report_distance": 10, "report_reason": CSAM_REASON,
    }  # fmt: skip
    settings = configure(actions={"report": report_config(devnet, ozone, tmp_path, via)}, rules=[rule])
    labeler = await running.start(settings)
    post = await banked_post(devnet, labeler)
    [report] = await settled(labeler, post.uri, 1)
    assert (report.kind, report.state, report.outcome) == ("report", "done", "reported"), report.detail
    assert report.result["reported_by"] == devnet.labeler.did and report.result["service"] == ozone.did

    async with httpx.AsyncClient(base_url=ozone.url, auth=ozone.admin_auth, timeout=10) as http:
        statuses = (await http.get("/xrpc/tools.ozone.moderation.queryStatuses", params={"subject": post.uri})).json()
        [status] = statuses["subjectStatuses"]
        assert (
            status["subject"]["uri"] == post.uri and status["reviewState"] == "tools.ozone.moderation.defs#reviewOpen"
        )
        events = (
            await http.get(
                "/xrpc/tools.ozone.moderation.queryEvents",
                params={"subject": post.uri, "types": "tools.ozone.moderation.defs#modEventReport"},
            )
        ).json()["events"]
    [event] = events
    assert event["createdBy"] == devnet.labeler.did
    assert event["event"]["reportType"] == CSAM_REASON
    assert f"bank {BANK}" in event["event"]["comment"] and "pdq distance 0" in event["event"]["comment"]


async def test_admin_api_down_then_back_and_a_wrong_password(
    devnet: Devnet,
    configure: Callable[..., Settings],
    tmp_path: Path,
    running: Running,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rule = {**TAKEDOWN_RULE, "review_distance": -1}
    pds_port = int(devnet.pds_url.rsplit(":", 1)[1])
    async with GateProxy("127.0.0.1", pds_port, marker=b"updateSubjectStatus") as proxy:
        # The admin API is down for a while: attempts fail and back off; when it returns, the takedown happens.
        await proxy.set("down")
        settings = configure(actions={"takedown": takedown_config(devnet, tmp_path, url=proxy.url)}, rules=[rule])
        labeler = await running.start(settings)
        post = await banked_post(devnet, labeler)

        async def retrying() -> bool:
            rows = await labeler.pipeline.actioner.outbox.list(subject_uri=post.uri)
            return len(rows) == 2 and all(a.attempts >= 3 and a.state == "pending" for a in rows)

        await until(retrying, "takedown attempts failing while the admin API is down")
        assert await served(devnet, post) == (200, 200)
        await proxy.set("forward")
        rows = await settled(labeler, post.uri, 2)
        assert [(a.state, a.outcome) for a in rows] == [("done", "applied")] * 2
        assert proxy.forwarded == 2 and await served(devnet, post) == (400, 400)
        await running.stop(labeler)

        # A wrong admin password: one refused request per action, a recorded failure and an ERROR line; no more.
        wrong = configure(
            actions={"takedown": takedown_config(devnet, tmp_path, url=proxy.url, password="not-the-password")},
            rules=[rule],
        )
        labeler = await running.start(wrong)
        with caplog.at_level(logging.ERROR):
            post = await banked_post(devnet, labeler)
            rows = await settled(labeler, post.uri, 2)
            await asyncio.sleep(2.0)  # several backoff periods: nothing is retried
        rows = await labeler.pipeline.actioner.outbox.list(subject_uri=post.uri)
        assert [(a.state, a.outcome, a.attempts) for a in rows] == [("failed", "http-401", 1)] * 2
        assert proxy.forwarded == 4 and await served(devnet, post) == (200, 200)
        errors = [
            r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and "failed for good" in r.getMessage()
        ]
        assert len(errors) == 2 and all("admin_password_file" in e for e in errors)
        assert not any("not-the-password" in r.getMessage() for r in caplog.records)
        async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url) as http:
            metrics = (await http.get("/metrics")).text
        assert 'labeler_actions_total{kind="takedown",op="apply",state="failed"} 2.0' in metrics
    # `labeler doctor` says so before any action is tried, and is content with the right password.
    async with httpx.AsyncClient(timeout=10) as http:
        wrong_config = takedown_config(devnet, tmp_path, password="not-the-password")
        wrong_pds = load_actions(configure(actions={"takedown": wrong_config}).extra).takedown
        right_pds = load_actions(configure(actions={"takedown": takedown_config(devnet, tmp_path)}).extra).takedown
        assert wrong_pds is not None and right_pds is not None
        assert (await takedown_finding(wrong_pds, http)).status == "fail"
        assert (await takedown_finding(right_pds, http)).status == "ok"


async def test_a_restart_mid_takedown_does_it_exactly_once(
    devnet: Devnet, configure: Callable[..., Settings], tmp_path: Path, running: Running
) -> None:
    rule = {**TAKEDOWN_RULE, "review_distance": -1}
    pds_port = int(devnet.pds_url.rsplit(":", 1)[1])
    async with GateProxy("127.0.0.1", pds_port, marker=b"updateSubjectStatus") as proxy:
        settings = configure(actions={"takedown": takedown_config(devnet, tmp_path, url=proxy.url)}, rules=[rule])
        config = tmp_path / "labeler.toml"
        config.write_text(toml(settings.extra))
        setup = Labeler(settings)
        await setup.start()
        try:
            post = await banked_post(devnet, setup)  # the job waits in the queue
        finally:
            await setup.aclose()
        # A `labeler serve` process with a worker takes the job and sends the takedowns, which the proxy holds ...
        await proxy.set("hold")
        process = ServeProcess(
            "a", settings.database_url, tmp_path, password="x", did=settings.did, LABELER_WORKERS="1",
            LABELER_CONFIG=str(config), LABELER_PLC_URL=devnet.plc_url, LABELER_ALLOW_PRIVATE_FETCH="true",
        )  # fmt: skip
        try:
            await process.start()

            async def both_held() -> bool:
                return proxy.held == 2

            await until(both_held, "both takedowns in flight")
            await process.kill()  # ... and dies before any answer.
        finally:
            await process.stop()
        await proxy.set("forward")
        # The next process takes the actions over when their lease ends, and the PDS is asked once per action.
        labeler = await running.start(settings)
        rows = await settled(labeler, post.uri, 2)
    assert [(a.state, a.outcome, a.attempts) for a in rows] == [("done", "applied", 2)] * 2
    assert (proxy.held, proxy.forwarded) == (2, 2)
    assert await served(devnet, post) == (400, 400)


async def test_child_safety_default_publishes_nothing_before_confirmation(
    devnet: Devnet, configure: Callable[..., Settings], tmp_path: Path, running: Running
) -> None:
    actions = {"child_safety_banks": [BANK], "takedown": takedown_config(devnet, tmp_path)}
    labeler = await running.start(configure(actions=actions))  # no [[policy.rules]]: the defaults
    async with serve_labeler(labeler) as live, httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        stream_url = f"{live.ws_url}/xrpc/com.atproto.label.subscribeLabels?cursor=0"
        async with websockets.connect(stream_url) as stream:
            post = await banked_post(devnet, labeler)
            review, record, blob = await settled(labeler, post.uri, 3)
            assert (review.kind, record.outcome, blob.outcome) == ("review", "applied", "applied")
            assert await served(devnet, post) == (400, 400)
            query = {"uriPatterns": post.uri}
            assert (await http.get("/xrpc/com.atproto.label.queryLabels", params=query)).json()["labels"] == []
            assert (await http.get("/xrpc/com.atproto.label.queryLabels", params={"uriPatterns": "*"})).json()[
                "labels"
            ] == []
            assert await frames(stream, within=1.5) == []  # nothing public about the post, live or replayed

            await labeler.pipeline.decisions.confirm(review.result["review_item"], actor="did:plc:moderator")
            labels = (await http.get("/xrpc/com.atproto.label.queryLabels", params=query)).json()["labels"]
            assert [(lb["val"], lb["uri"], lb["cid"]) for lb in labels] == [("!hide", post.uri, post.cid)]
            [frame] = await frames(stream, within=5.0, wanted=1)
            assert [(lb["val"], lb["uri"]) for lb in frame["labels"]] == [("!hide", post.uri)]


async def frames(stream: Any, *, within: float, wanted: int | None = None) -> list[dict[str, Any]]:
    """`#labels` frames that arrive within `within` seconds (or until `wanted` did)."""
    got: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + within
    while wanted is None or len(got) < wanted:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        try:
            raw = await asyncio.wait_for(stream.recv(), left)
        except TimeoutError:
            break
        header, body = decode_frame(raw)
        if header.get("t") == "#labels":
            got.append(body)
    return got


def toml(extra: dict[str, Any]) -> str:
    """The settings' extras as a labeler.toml (only what these tests use: tables of scalars and lists)."""
    lines: list[str] = []
    for name, table in extra.items():
        if name == "policy":
            for rule in table["rules"]:
                lines.append("[[policy.rules]]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in rule.items()]
            continue
        lines.append(f"[{name}]")
        nested = {k: v for k, v in table.items() if isinstance(v, dict)}
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items() if k not in nested]
        for sub, values in nested.items():
            lines.append(f"[{name}.{sub}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def test_toml_writer_round_trips() -> None:
    extra = {"actions": {"a": 1, "t": {"u": "x", "h": ["y"]}}, "policy": {"rules": [{"name": "r", "banks": ["B"]}]}}
    assert tomllib.loads(toml(extra)) == extra
