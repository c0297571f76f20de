"""Review hand-off to Altitude, against a stand-in that speaks Altitude's API over loopback HTTP: a matched image
becomes a target (with its bytes), a signal and a case; a decision made in Altitude confirms or rejects our review
item like a moderator's; Altitude down loses nothing; a child-safety bank's image is never sent."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pipeline.blob_server import PdsWorld
from pipeline.conftest import pds_world  # noqa: F401 (fixture)
from pipeline.corpus import encode, structured_rgb
from pipeline.harness import Harness, all_done, eventually
from support.server import free_port, serve_in_thread

from labeler.config import ConfigError
from labeler.pipeline.actions.altitude.api import AltitudeApi, AltitudeRefused, AltitudeUnavailable
from labeler.pipeline.actions.altitude.poller import ACTOR
from labeler.pipeline.actions.config import AltitudeConfig, check_policy, load_actions
from labeler.pipeline.actions.doctor import altitude_finding
from labeler.pipeline.actions.model import ActionSpec
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.policy import load_policy
from labeler.service import Labeler

from .altitude_standin import Altitude

TOKEN = "altitude-proxy-token-for-tests"
RULES = [
    {"name": "terror", "banks": ["TERROR"], "labels": ["spam"], "label_distance": -1, "review_distance": 31},
    {"name": "csam", "banks": ["CSAM"], "labels": ["spam"], "label_distance": -1, "review_distance": 31},
]


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "altitude-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def altitude() -> Iterator[tuple[Altitude, str]]:
    standin = Altitude(token=TOKEN)
    with serve_in_thread(standin.app) as server:
        yield standin, f"{server.url}/api"


def settings_for(harness: Harness, url: str, token_file: str, **altitude: Any) -> Any:
    table = {"url": url, "token_file": token_file, "rules": ["terror"], "poll_seconds": 1, **altitude}
    actions = {"child_safety_banks": ["CSAM"], "retry_base_seconds": 0.05, "retry_cap_seconds": 0.3}
    return harness.settings(extra={"actions": {**actions, "altitude": table}, "policy": {"rules": RULES}})


async def matched(harness: Harness, labeler: Labeler, bank: str, seed: int) -> tuple[int, str, bytes]:
    """Post an image that is in `bank`; (its review item id, the author's DID, the image's bytes)."""
    image = encode(structured_rgb(160, 120, seed=seed), "PNG")
    did = harness.world.account()
    spec = harness.post(did, f"p{seed}", image)
    await harness.bank(labeler, bank, [hash_image(image).hash])
    await labeler.pipeline.jobs.enqueue([spec])
    await all_done(labeler, 1)
    [item] = await labeler.pipeline.reviews.list(subject_uri=spec.subject_uri)
    return item.id, did, image


async def test_a_matched_image_becomes_an_altitude_case_and_its_block_confirms_our_item(
    pds_world: PdsWorld,  # noqa: F811
    make_settings: Any,
    altitude: tuple[Altitude, str],
    token_file: str,
) -> None:
    standin, url = altitude
    harness = Harness(pds_world, make_settings, "embedded", None)
    with pds_world.pds_running():
        async with harness.running(
            settings_for(harness, url, token_file, settle_seconds=30, poll_seconds=3600), workers=1
        ) as labeler:
            item_id, did, image = await matched(harness, labeler, "TERROR", seed=21)

            async def filed() -> bool:
                rows = await labeler.pipeline.actioner.outbox.list(kind="altitude")
                return bool(rows) and rows[0].finished

            await eventually(filed, what="the case in Altitude")
            [target], [signal], [case] = standin.targets.values(), standin.signals.values(), standin.cases.values()
            assert base64.b64decode(target["content_bytes"]) == image
            item = await labeler.pipeline.reviews.get(item_id)
            assert json.loads(target["client_context"]) == {
                "review_item": item_id, "author": did, "subject": item.subject_uri,
            }  # fmt: skip
            assert did in target["title"] and item.subject_uri in target["description"]
            assert signal["content"] == [{"value": item.evidence["pdq"], "content_type": "HASH_PDQ"}]
            assert signal["sources"][0]["name"] == "USER_REPORT"
            assert (case["target_id"], case["signal_ids"], case["state"]) == (target["id"], [signal["id"]], "ACTIVE")
            [handoff] = await labeler.pipeline.actioner.outbox.list(kind="altitude")
            assert (handoff.state, handoff.outcome, handoff.result) == (
                "done", "filed", {"review_item": item_id, "target_id": target["id"], "case_id": case["id"]},
            )  # fmt: skip

            poller = labeler.pipeline.altitude_poller
            assert poller is not None
            standin.decide(case["id"], "BLOCK", age=0)  # still a draft Altitude may undo: not acted on yet
            assert await poller.poll_once() == 0
            assert (await labeler.pipeline.reviews.get(item_id)).status == "pending"
            standin.decide(case["id"], "BLOCK", user="analyst@altitude", age=60)
            assert await poller.poll_once() == 1
            item = await labeler.pipeline.reviews.get(item_id)
            assert (item.status, item.decided_by, item.decided_via) == ("confirmed", ACTOR, ACTOR)
            assert item.decision_note == f"via altitude: case {case['id']} BLOCK by analyst@altitude"
            labels = await labeler.pipeline.actioner.outbox.list(kind="label", subject_uri=item.subject_uri)
            assert [(a.state, a.params["vals"], a.actor) for a in labels] == [("done", ["spam"], ACTOR)]
            assert await poller.poll_once() == 0  # closed: not read again
    assert standin.requests.count(("GET", f"/api/cases/{case['id']}")) == 2


async def test_altitude_down_loses_nothing_and_its_approve_rejects_our_item(
    pds_world: PdsWorld,  # noqa: F811
    make_settings: Any,
    token_file: str,
) -> None:
    standin = Altitude(token=TOKEN)
    port = free_port()
    harness = Harness(pds_world, make_settings, "embedded", None)
    settings = settings_for(harness, f"http://127.0.0.1:{port}/api", token_file, settle_seconds=0, banks=["TERROR"])
    with pds_world.pds_running():
        async with harness.running(settings, workers=1) as labeler:
            outbox = labeler.pipeline.actioner.outbox
            item_id, _, _ = await matched(harness, labeler, "TERROR", seed=22)

            async def retried() -> bool:
                rows = await outbox.list(kind="altitude")
                return bool(rows) and rows[0].attempts >= 2

            await eventually(retried, what="retries while Altitude is down")
            [row] = await outbox.list(kind="altitude")
            assert (row.state in ("pending", "running"), row.outcome) == (True, "ConnectError")
            with serve_in_thread(standin.app, port=port):
                standin.fail_next(2, status=503)  # up, behind a proxy still answering 503

                async def filed() -> bool:
                    return (await outbox.list(kind="altitude"))[0].state == "done"

                await eventually(filed, what="the hand-off once Altitude is back")
                assert len(standin.targets) == len(standin.cases) == 1  # retries did not file it twice
                [case] = standin.cases.values()
                standin.fail_next(1, status=500)  # the first read of the decision fails: read again next round
                standin.decide(case["id"], "APPROVE")

                async def decided() -> bool:
                    return (await labeler.pipeline.reviews.get(item_id)).status != "pending"

                await eventually(decided, what="Altitude's decision read back")
            item = await labeler.pipeline.reviews.get(item_id)
    assert (item.status, item.decided_by) == ("rejected", ACTOR)
    assert item.decision_note is not None and item.decision_note.startswith(f"via altitude: case {case['id']} APPROVE")
    assert standin.requests.count(("GET", f"/api/cases/{case['id']}")) >= 2


async def test_a_child_safety_banks_image_is_never_sent(
    pds_world: PdsWorld,  # noqa: F811
    make_settings: Any,
    altitude: tuple[Altitude, str],
    token_file: str,
) -> None:
    standin, url = altitude
    harness = Harness(pds_world, make_settings, "embedded", None)
    with pds_world.pds_running():
        async with harness.running(settings_for(harness, url, token_file), workers=1) as labeler:
            item_id, _, _ = await matched(harness, labeler, "CSAM", seed=23)
            assert await labeler.pipeline.actioner.outbox.list(kind="altitude") == []  # not routed
            item = await labeler.pipeline.reviews.get(item_id)
            # The second guard: a hand-off of this item queued anyway (a bug, a hand-edited row) sends nothing.
            spec = ActionSpec(
                kind="altitude", subject_uri=item.subject_uri, params={"review_item": item_id},
                dedupe_key=f"altitude|{item_id}", actor="test", rule="csam", evidence=item.evidence,
            )  # fmt: skip
            [row] = await labeler.pipeline.actioner.submit([spec], for_person=True)
            assert (row.state, row.outcome) == ("skipped", "child-safety")
    assert standin.requests == []


def test_config_refuses_sending_child_safety_banks_and_unsafe_tokens(token_file: str, tmp_path: Path) -> None:
    def load(**altitude: Any) -> Any:
        table = {"url": "https://altitude.example/api", **altitude}
        return load_actions({"actions": {"child_safety_banks": ["CSAM"], "altitude": table}})

    with pytest.raises(ConfigError, match="child-safety"):
        load(banks=["TERROR", "CSAM"])
    with pytest.raises(ConfigError, match="nothing would be sent"):
        load()
    loose = tmp_path / "loose-token"
    loose.write_text(TOKEN)
    os.chmod(loose, 0o644)
    with pytest.raises(ConfigError, match="readable by others") as refused:
        load(banks=["TERROR"], token_file=str(loose))
    assert TOKEN not in str(refused.value)
    config = load(banks=["TERROR"], token_file=token_file).altitude
    assert config.token == TOKEN and TOKEN not in repr(config)
    wildcard = [{"name": "all", "banks": ["*"], "labels": ["spam"]}]
    for rules, routed in ((RULES, ["csam"]), (wildcard, ["all"]), (RULES, ["nonesuch"])):
        policy = load_policy({"policy": {"rules": rules}}, "spam", child_safety_banks=["CSAM"])
        with pytest.raises(ConfigError, match=r"child-safety|no policy rule"):
            check_policy(policy, load(rules=routed))
    check_policy(load_policy({"policy": {"rules": RULES}}, "spam", child_safety_banks=["CSAM"]), load(rules=["terror"]))


async def test_altitudes_answers_are_told_apart_for_retrying(altitude: tuple[Altitude, str]) -> None:
    standin, url = altitude
    image = encode(structured_rgb(32, 32, seed=5), "PNG")
    api = AltitudeApi(url, TOKEN, timeout=5.0, max_image_bytes=len(image))
    stranger = AltitudeApi(url, "not-the-token", timeout=5.0, max_image_bytes=len(image))
    try:
        with pytest.raises(AltitudeRefused, match=r"http-400.*Unable to process image data"):
            await api.create_target(b"not an image", title="t", description="d", client_context="c")
        with pytest.raises(AltitudeRefused, match="http-401"):
            await stranger.create_target(image, title="t", description="d", client_context="c")
        with pytest.raises(AltitudeRefused, match="http-404"):
            await api.latest_review("65f0000000000000000000ff")
        standin.fail_next(1, status=503)
        with pytest.raises(AltitudeUnavailable, match="http-503"):
            await api.create_signal("HASH_MD5", "0" * 32, author="a")
        target = await api.create_target(image, title="t", description="d", client_context="c")
        case = await api.create_case(target, await api.create_signal("HASH_MD5", "0" * 32, author="a"))
        assert await api.latest_review(case) is None
        standin.decide(case, "APPROVE", user="x")
        review = await api.latest_review(case)
        assert review is not None and (review.decision, review.user) == ("APPROVE", "x")
    finally:
        await api.aclose()
        await stranger.aclose()


async def test_doctor_says_whether_altitude_answers_and_takes_our_token(altitude: tuple[Altitude, str]) -> None:
    _, url = altitude
    findings = [
        await altitude_finding(AltitudeConfig(target, token, banks=("TERROR",)))
        for target, token in ((url, TOKEN), (url, "wrong"), (f"http://127.0.0.1:{free_port()}/api", TOKEN))
    ]
    assert [f.status for f in findings] == ["ok", "fail", "warn"]
    assert all(TOKEN not in f.message for f in findings)
