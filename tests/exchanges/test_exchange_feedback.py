"""Feedback to a hash exchange through the real pipeline: an NCMEC entry fetched from the stand-in matches a posted
image, the match waits in review, and a moderator's decision (`Decisions`, which the CLI, the HTTP API and the
consoles all call) reaches the stand-in as NCMEC's upvote or downvote: once per decision, retried through an
outage and a restart, refused for good (and recorded) on bad credentials, and never when feedback is off. A
StopNCII hash's verdicts reach StopNCII's stand-in the same way, as its Blocked and NotBlocked."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from pipeline.blob_server import PdsWorld
from pipeline.conftest import pds_world  # noqa: F401 (fixture)
from pipeline.corpus import encode, flip_bits, structured_rgb
from pipeline.harness import Harness, all_done, eventually
from support.server import serve_in_thread

from labeler.config import Settings
from labeler.exchanges.credentials import Credentials, write_credentials
from labeler.exchanges.fetch import fetch_exchange, http_client
from labeler.exchanges.tat import DEFAULT_URL as TAT_URL
from labeler.exchanges.types import exchange_type
from labeler.pipeline.actions.exchange_feedback import NAME as FEEDBACK
from labeler.pipeline.actions.model import Action
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.jobs import JobSpec
from labeler.service import Labeler

from .harness import cli_invoker, settled
from .ncmec_standin import REASON, Entry, NcmecStandin, Vote
from .stopncii_standin import Record, StopNciiStandin

BANK = "NCMEC"
T0 = 1_700_000_000
RETRY_FAST = {"actions": {"retry_base_seconds": 0.05, "retry_cap_seconds": 0.2}}


@dataclass
class Scene:
    """A posted image, the exchange entry near it (a review-distance match), and the stand-in serving the entry:
    NCMEC's unless a test asks for another exchange's (`type_`, its `credentials`, the entry's `external_id`)."""

    harness: Harness
    standin: Any
    url: str
    post: JobSpec
    banked: str
    type_: str = "ncmec"
    credentials: dict[str, str] = field(default_factory=dict)
    external_id: str = "42-image1"

    def settings(self) -> Settings:
        """Fast retries; exchanges fetched on demand only (the test's own fetch, not the workers' schedule)."""
        return self.harness.settings(pipeline={"exchange_fetch_seconds": 0}, extra=RETRY_FAST)

    def upvote(self) -> Vote:
        return Vote(42, "image1", "PDQ", "affirmative", None)

    def downvote(self, reason: str = REASON) -> Vote:
        return Vote(42, "image1", "PDQ", "negative", reason)


def posted(pds: PdsWorld, make_settings: Any) -> tuple[Harness, JobSpec, str]:
    """A harness, an image posted, and a PDQ near enough to match it but too far to label it unreviewed."""
    harness = Harness(pds, make_settings, "embedded", None)
    image = encode(structured_rgb(160, 120, seed=211), "PNG")
    return harness, harness.post(pds.account(), "p", image), flip_bits(hash_image(image).hash, 15, seed=21)


@pytest.fixture
def scene(pds_world: PdsWorld, make_settings: Any) -> Iterator[Scene]:  # noqa: F811
    harness, post, banked = posted(pds_world, make_settings)
    standin = NcmecStandin(entries=[Entry("image1", T0 + 10, {"pdq": banked, "md5": "c1" * 16})])
    credentials = {"user": standin.user, "password": standin.password}
    with serve_in_thread(standin.app()) as server, pds_world.pds_running():
        yield Scene(harness, standin, server.url, post, banked, credentials=credentials)


@pytest.fixture
def stopncii_scene(pds_world: PdsWorld, make_settings: Any) -> Iterator[Scene]:  # noqa: F811
    harness, post, banked = posted(pds_world, make_settings)
    standin = StopNciiStandin(records=[Record(banked.upper(), T0 + 10)])
    credentials = {
        "subscription_key": standin.subscription_key, "fetch_key": standin.fetch_key,
        "feedback_key": standin.feedback_key,
    }  # fmt: skip
    with serve_in_thread(standin.app()) as server, pds_world.pds_running():
        yield Scene(
            harness, standin, server.url + "/v1", post, banked, "stopncii", credentials, f"ImagePDQ:{banked.upper()}"
        )


async def fed_and_matched(scene: Scene, labeler: Labeler, settings: Settings, *, feedback: bool = True) -> int:
    """Exchange `nc` (feedback on or off) fetched into the bank, the post matched: its review item's id."""
    store = labeler.exchanges.store
    await store.banks.create(BANK)
    carries = exchange_type(scene.type_).signal_types
    await store.add("nc", scene.type_, BANK, {"url": scene.url, "feedback": feedback}, carries=carries)
    write_credentials(settings.keys_dir, "nc", Credentials(scene.credentials))
    async with http_client(allow_private=True) as http:
        report = await fetch_exchange(store, "nc", keys_dir=settings.keys_dir, http=http)
    assert (report.error, report.added) == (None, 1)

    async def matchable() -> bool:
        return bool(await labeler.pipeline.matcher.lookup(scene.banked, max_distance=0))

    await eventually(matchable, within=10, what="the fetched entry in the index")
    await labeler.pipeline.jobs.enqueue([scene.post])
    await all_done(labeler, 1)
    [item] = await labeler.pipeline.reviews.list(status="pending", subject_uri=scene.post.subject_uri)
    assert (item.evidence["match"]["external_id"], item.evidence["match"]["note"]) == (scene.external_id, "exchange:nc")
    return item.id


def feedback_of(actions: list[Action]) -> list[Action]:
    return [a for a in actions if a.kind == FEEDBACK]


async def test_confirming_upvotes_once_and_a_later_negation_downvotes(scene: Scene) -> None:
    settings = scene.settings()
    async with scene.harness.running(settings, workers=1) as labeler:
        item = await fed_and_matched(scene, labeler, settings)
        verdict = await labeler.pipeline.decisions.confirm(item, actor="did:plc:moderator", note="it is")
        [sent] = feedback_of(verdict.actions)
        sent = await settled(labeler, sent)
        assert (sent.state, sent.outcome, sent.params["confirmed"]) == ("done", "sent", True)
        assert sent.params["note"] == "it is"
        assert scene.standin.votes == [scene.upvote()]
        # The same decision queued again (a retried request, a second front end) is the same row: nothing is sent.
        again = await labeler.pipeline.actioner.exchange_feedback.plan(
            verdict.item.evidence, confirmed=True, key=sent.decision or "", actor="did:plc:other", note=None,
            subject_uri=sent.subject_uri, subject_cid=sent.subject_cid,
        )  # fmt: skip
        assert [a.id for a in await labeler.pipeline.actioner.submit(again, for_person=True)] == [sent.id]
        assert scene.standin.votes == [scene.upvote()]
        # Negating the label afterwards reverses the decision: NCMEC is told the opposite, with a reason.
        reversals = await labeler.pipeline.decisions.label_negated(
            sent.subject_uri, sent.subject_cid, ["csam-hash-match"], actor="did:plc:moderator", note="was wrong"
        )
        [undo] = feedback_of(reversals)
        undo = await settled(labeler, undo)
    assert (undo.op, undo.state, undo.reverses) == ("reverse", "done", sent.id)
    assert scene.standin.votes == [scene.upvote(), scene.downvote()]


async def test_stopncii_hears_blocked_for_a_confirmation_and_not_blocked_for_its_reversal_or_a_rejection(
    stopncii_scene: Scene,
) -> None:
    scene = stopncii_scene
    settings = scene.settings()
    async with scene.harness.running(settings, workers=1) as labeler:
        item = await fed_and_matched(scene, labeler, settings)
        [sent] = feedback_of((await labeler.pipeline.decisions.confirm(item, actor="did:plc:moderator")).actions)
        sent = await settled(labeler, sent)
        assert (sent.state, sent.outcome) == ("done", "sent")
        reversals = await labeler.pipeline.decisions.label_negated(
            sent.subject_uri, sent.subject_cid, ["csam-hash-match"], actor="did:plc:moderator", note="was wrong"
        )
        [undo] = feedback_of(reversals)
        undo = await settled(labeler, undo)
        assert (undo.op, undo.state) == ("reverse", "done")
    given = scene.banked.upper()  # StopNCII's own form of the hash, not the bank's
    assert scene.standin.feedback == [
        {"tags": [], "feedbackValue": "Blocked", "hashValue": given},
        {"tags": [], "feedbackValue": "NotBlocked", "hashValue": given},
    ]


async def test_a_stopncii_rejection_is_not_blocked(stopncii_scene: Scene) -> None:
    scene = stopncii_scene
    settings = scene.settings()
    async with scene.harness.running(settings, workers=1) as labeler:
        item = await fed_and_matched(scene, labeler, settings)
        [sent] = feedback_of((await labeler.pipeline.decisions.reject(item, actor="mod", note="a sunset")).actions)
        sent = await settled(labeler, sent)
    assert (sent.state, sent.outcome) == ("done", "sent")
    assert scene.standin.feedback == [{"tags": [], "feedbackValue": "NotBlocked", "hashValue": scene.banked.upper()}]


async def test_rejecting_downvotes_with_the_only_reason_ncmec_offers(scene: Scene) -> None:
    settings = scene.settings()
    async with scene.harness.running(settings, workers=1) as labeler:
        item = await fed_and_matched(scene, labeler, settings)
        verdict = await labeler.pipeline.decisions.reject(item, actor="did:plc:moderator", note="a sunset")
        [sent] = feedback_of(verdict.actions)
        sent = await settled(labeler, sent)
    assert (sent.state, sent.outcome, sent.params["confirmed"]) == ("done", "sent", False)
    assert scene.standin.votes == [scene.downvote()]


def test_with_several_reasons_the_configured_one_is_given(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    """NCMEC offering several reasons and none chosen: the downvote fails for good with the choices in its detail;
    once `labeler exchange feedback nc on --reason …` names one, `labeler actions retry` sends it."""
    other = "0c9f1a4e-5b7d-4e8a-9f3c-2d1e0b6a7c58"
    scene.standin.reasons["PDQ"] = {REASON: "Not CSAM", other: "Poor quality hash"}
    settings = scene.settings()

    async def reject() -> Action:
        async with scene.harness.running(settings, workers=1) as labeler:
            item = await fed_and_matched(scene, labeler, settings)
            [sent] = feedback_of((await labeler.pipeline.decisions.reject(item, actor="mod")).actions)
            sent = await settled(labeler, sent)
            return sent

    sent = asyncio.run(reject())
    assert (sent.state, sent.outcome) == ("failed", "exchange-refused")
    assert "'Not CSAM', 'Poor quality hash'" in (sent.detail or "") and "--reason" in (sent.detail or "")
    assert scene.standin.votes == []
    invoke = cli_invoker(settings, monkeypatch)
    listed = invoke("actions", "list", "--state", "failed", "--kind", FEEDBACK)
    assert (
        f"#{sent.id} {FEEDBACK} apply: failed (exchange-refused) by mod [rule default] exchange nc entry 42-image1: "
        "NCMEC takes a downvote" in listed.output
    )
    switched = invoke("exchange", "feedback", "nc", "on", "--reason", "poor quality hash")
    assert switched.exit_code == 0 and "downvote reason 'poor quality hash'" in switched.output
    retried = invoke("actions", "retry", str(sent.id))
    assert retried.exit_code == 0 and "done (sent)" in retried.output, retried.output
    assert scene.standin.votes == [scene.downvote(other)]


async def test_feedback_off_sends_nothing(scene: Scene) -> None:
    settings = scene.settings()
    async with scene.harness.running(settings, workers=1) as labeler:
        item = await fed_and_matched(scene, labeler, settings, feedback=False)
        confirmed = await labeler.pipeline.decisions.confirm(item, actor="did:plc:moderator")
        queued = await labeler.pipeline.actioner.outbox.list(kind=FEEDBACK)
    assert feedback_of(confirmed.actions) == [] and queued == []
    assert scene.standin.votes == []


async def test_an_outage_is_retried_across_a_restart_and_delivered_once(scene: Scene) -> None:
    settings = scene.settings()
    scene.standin.feedback_down = True
    async with scene.harness.running(settings, workers=1) as labeler:
        item = await fed_and_matched(scene, labeler, settings)
        [sent] = feedback_of((await labeler.pipeline.decisions.confirm(item, actor="mod")).actions)
        sent = await settled(labeler, sent)
        assert (sent.state, sent.outcome) == ("pending", "exchange-unavailable") and "HTTP 503" in (sent.detail or "")

        async def retried() -> bool:
            row = await labeler.pipeline.actioner.outbox.get(sent.id)
            return row is not None and row.attempts >= 3

        await eventually(retried, within=10, what="the runner retrying through the outage")
        retries = labeler.metrics.registry.get_sample_value(
            "labeler_action_retries_total", {"kind": FEEDBACK, "cause": "exchange-unavailable"}
        )
    assert scene.standin.votes == [] and retries is not None and retries >= 2
    scene.standin.feedback_down = False
    async with scene.harness.running(settings, workers=1) as labeler:  # after a restart

        async def delivered() -> bool:
            row = await labeler.pipeline.actioner.outbox.get(sent.id)
            return row is not None and row.state == "done"

        await eventually(delivered, within=10, what="the upvote delivered after the outage")
    assert scene.standin.votes == [scene.upvote()]


async def test_refused_credentials_fail_once_recorded_without_the_password(scene: Scene) -> None:
    settings = scene.settings()
    async with scene.harness.running(settings, workers=1) as labeler:
        item = await fed_and_matched(scene, labeler, settings)
        wrong = {"user": scene.standin.user, "password": "not-the-password"}
        write_credentials(settings.keys_dir, "nc", Credentials(wrong))
        [sent] = feedback_of((await labeler.pipeline.decisions.confirm(item, actor="mod")).actions)
        sent = await settled(labeler, sent)
        failed = labeler.metrics.registry.get_sample_value(
            "labeler_actions_total", {"kind": FEEDBACK, "op": "apply", "state": "failed"}
        )
        [listed] = await labeler.pipeline.actioner.outbox.list(state="failed", kind=FEEDBACK)
    assert (sent.state, sent.outcome, sent.attempts) == ("failed", "exchange-auth", 1)
    assert "refused the credentials (HTTP 401)" in (sent.detail or "") and "not-the-password" not in (sent.detail or "")
    assert failed == 1.0 and listed.id == sent.id
    assert scene.standin.votes == []


def test_cli_switches_feedback_on_and_off(scene: Scene, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = scene.settings()
    invoke = cli_invoker(settings, monkeypatch)
    assert invoke("bank", "create", BANK).exit_code == 0
    added = invoke("exchange", "add", "nc", "--type", "ncmec", "--bank", BANK, "--url", scene.url, "--user", "u",
                   "--password", "p", "--feedback")  # fmt: skip
    assert added.exit_code == 0 and "moderators' verdicts are sent back to it" in added.output, added.output
    assert "\tfeedback on\t" in invoke("exchange", "list").output
    off = invoke("exchange", "feedback", "nc", "off")
    assert off.exit_code == 0 and "no feedback is sent" in off.output
    assert "\tfeedback off\t" in invoke("exchange", "list").output
    assert '"feedback": false' in invoke("exchange", "list", "--json").output
    unknown = invoke("exchange", "feedback", "nowhere", "on")
    assert unknown.exit_code != 0 and "no exchange named 'nowhere'" in unknown.output
    # Tech Against Terrorism has no feedback call: switching it on is refused, when added and later.
    tat = ["exchange", "add", "tat", "--type", "tat", "--bank", BANK, "--user", "u", "--password", "p"]
    refused = invoke(*tat, "--feedback")
    assert refused.exit_code != 0 and "tat exchanges take no feedback" in refused.output
    assert invoke(*tat).exit_code == 0
    later = invoke("exchange", "feedback", "tat", "on")
    assert later.exit_code != 0 and "tat exchanges take no feedback" in later.output
    listed = f"tat\ttat\tNCMEC\t{TAT_URL}\t0 entries\tlast fetched never\tno feedback call"
    assert listed in invoke("exchange", "list").output
