"""`labeler doctor` against local stand-ins: a fake PLC with our DID document, a fake PDS holding the
declaration, and our labeler served by real uvicorn at `http://localhost:PORT`. Each broken setup is detected
by the check named for it, and a healthy setup passes."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from support.fake_pds import FakePds, running_fake_pds
from support.fake_plc import FakePlc, did_document, new_plc_did, running_fake_plc
from support.labels import seed_labels
from support.server import RunningServer

from labeler.cli import cli
from labeler.cli.doctor import local_facts
from labeler.config import Settings
from labeler.identity.declare import COLLECTION, RKEY, build_record, value_problem
from labeler.identity.doctor import WINDOW, Finding, LocalFacts, diagnose, healthy
from labeler.identity.doctor.appview import check_appview
from labeler.identity.resolver import DidResolver
from labeler.labels.writer import LabelRequest
from labeler.outbound import public_transport
from labeler.protocol import syntax
from labeler.protocol.crypto import SigningKey
from labeler.protocol.label import Label
from labeler.service import Labeler
from labeler.store.label_samples import sample_sources, stream_cursor
from labeler.store.schema import labels
from labeler.testing import LiveServer, serve_labeler

DECLARED = "csam-hash-match"


@pytest.fixture(scope="module")
def plc_server() -> Iterator[tuple[FakePlc, RunningServer]]:
    with running_fake_plc() as running:
        yield running


@pytest.fixture(scope="module")
def pds_server() -> Iterator[tuple[FakePds, RunningServer]]:
    with running_fake_pds() as running:
        yield running


@dataclass
class Setup:
    settings: Settings
    labeler: Labeler
    live: LiveServer
    plc: FakePlc
    pds: FakePds
    pds_url: str
    plc_url: str

    @property
    def did(self) -> str:
        return self.settings.did

    @property
    def endpoint(self) -> str:
        return f"http://localhost:{self.live.port}"

    def publish_document(self, *, label: SigningKey | None = None, endpoint: str | None = None) -> None:
        key = label or self.labeler.keyring.active()[1]
        self.plc.put(
            self.did,
            did_document(self.did, label=key, labeler=endpoint or self.endpoint, pds=self.pds_url, handle=None),
        )

    async def run(self, **fact_changes: Any) -> dict[str, Finding]:
        facts: LocalFacts = replace(await local_facts(self.settings), public_url=self.endpoint, **fact_changes)
        async with (
            DidResolver(plc_url=self.plc_url, refresh_cooldown=0) as resolver,
            httpx.AsyncClient(timeout=5, trust_env=False) as http,
        ):
            findings = await diagnose(facts, resolver, http, ws_wait=0.3)
        assert len({f.check for f in findings}) == len(findings) == 10, findings
        return {f.check: f for f in findings}


@pytest.fixture
async def setup(
    make_settings: Any, plc_server: tuple[FakePlc, RunningServer], pds_server: tuple[FakePds, RunningServer]
) -> AsyncIterator[Setup]:
    settings = make_settings(did=new_plc_did())
    labeler = Labeler(settings)
    await labeler.start()
    try:
        async with serve_labeler(labeler) as live:
            env = Setup(settings, labeler, live, plc_server[0], pds_server[0], pds_server[1].url, plc_server[1].url)
            env.publish_document()
            env.pds.records[(env.did, COLLECTION, RKEY)] = build_record(settings)
            await labeler.writer.write([LabelRequest(uri="did:plc:someoneelsesomeoneelse2", val=DECLARED)])
            yield env
    finally:
        await labeler.aclose()


def failing(findings: dict[str, Finding]) -> set[str]:
    return {name for name, f in findings.items() if f.status == "fail"}


async def test_healthy_setup_passes(setup: Setup) -> None:
    findings = await setup.run()
    assert {f.status for f in findings.values()} == {"ok"}, findings
    assert healthy(list(findings.values()))
    assert f"1 sampled labels of {setup.did} verify" in findings["query-labels"].message
    assert "replays the newest 1 labels" in findings["subscribe-labels"].message


async def test_wrong_key_in_the_did_document(setup: Setup) -> None:
    setup.publish_document(label=SigningKey.generate())
    findings = await setup.run()
    assert failing(findings) == {"label-key", "query-labels", "subscribe-labels"}
    assert "consumers reject every label" in findings["label-key"].message
    assert findings["label-key"].fix


async def test_missing_label_key(setup: Setup) -> None:
    document = did_document(setup.did, labeler=setup.endpoint, pds=setup.pds_url, handle=None)
    setup.plc.put(setup.did, document)
    assert failing(await setup.run()) == {"label-key", "query-labels", "subscribe-labels"}


async def test_no_active_key_names_the_steps_that_publish_one(setup: Setup) -> None:
    """For a did:plc, a key from `keys generate` alone is in no document: the fix names how to publish one (the
    same words `serve` uses when it refuses to start without a key). Our own did:web is served from it."""
    plc = (await setup.run(active_did_key=None))["label-key"]
    assert plc.status == "fail" and plc.message == "no active label key" and plc.fix
    assert "labeler keys rotate" in plc.fix and "labeler did update" in plc.fix
    own_web = (await setup.run(active_did_key=None, serves_did_web=True))["label-key"]
    assert own_web.fix and "labeler keys generate" in own_web.fix and "rotate" not in own_web.fix


async def test_ip_address_endpoint(setup: Setup) -> None:
    setup.publish_document(endpoint=f"http://127.0.0.1:{setup.live.port}")
    findings = await setup.run()
    assert failing(findings) == {"labeler-endpoint"}
    assert "IP address" in findings["labeler-endpoint"].message


async def test_endpoint_with_a_path(setup: Setup) -> None:
    setup.publish_document(endpoint=f"{setup.endpoint}/labeler")
    findings = await setup.run()
    assert failing(findings) == {"labeler-endpoint"}
    assert findings["query-labels"].status == "skip"


async def test_unreachable_endpoint(setup: Setup) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    setup.publish_document(endpoint=f"http://localhost:{closed}")
    findings = await setup.run()
    assert "endpoint-reachable" in failing(findings)
    assert "unreachable" in findings["endpoint-reachable"].message
    assert findings["subscribe-labels"].status == "skip"


async def test_missing_declaration(setup: Setup) -> None:
    del setup.pds.records[(setup.did, COLLECTION, RKEY)]
    findings = await setup.run()
    assert failing(findings) == {"declaration"}
    assert findings["declaration"].fix == "`labeler declare`"
    assert findings["declared-values"].status == "skip"


async def test_invalid_declaration(setup: Setup) -> None:
    setup.pds.records[(setup.did, COLLECTION, RKEY)] = {"$type": COLLECTION, "policies": {"labelValues": ["Bad"]}}
    findings = await setup.run()
    assert "declaration" in failing(findings)
    assert "invalid" in findings["declaration"].message


async def test_undeclared_value(setup: Setup) -> None:
    await setup.labeler.writer.write([LabelRequest(uri="did:plc:someoneelsesomeoneelse2", val="spam")])
    findings = await setup.run()
    assert failing(findings) == {"declared-values"}
    assert "spam" in findings["declared-values"].message and DECLARED not in findings["declared-values"].message


async def test_bad_value_syntax(setup: Setup) -> None:
    """A legacy row written before values were validated (seeded straight into the table)."""
    await seed_labels(setup.labeler, [Label(setup.did, "did:plc:someoneelsesomeoneelse2", "Bad Value", syntax.now())])
    setup.pds.records[(setup.did, COLLECTION, RKEY)]["policies"]["labelValues"].append("Bad Value")
    findings = await setup.run()
    assert "value-syntax" in failing(findings)
    assert "'Bad Value' does not match ^[a-z-]+$" in findings["value-syntax"].message


async def test_labels_under_a_former_did_verify_against_that_did(setup: Setup) -> None:
    """After a DID change the table serves two `src`s; each is checked against its own document."""
    former = new_plc_did()
    subject = "did:plc:someoneelsesomeoneelse2"
    await seed_labels(setup.labeler, [Label(former, subject, DECLARED, syntax.now())])
    setup.plc.put(former, did_document(former, label=setup.labeler.keyring.active()[1], pds=None, handle=None))
    findings = await setup.run()
    assert not failing(findings), findings
    assert "2 sampled labels of 2 sources verify" in findings["query-labels"].message

    setup.plc.put(former, did_document(former, label=SigningKey.generate(), pds=None, handle=None))
    findings = await setup.run()
    assert failing(findings) == {"query-labels", "subscribe-labels"}
    assert f"1 of 1 sampled labels (oldest, random, newest) of {former} do not verify" in (
        findings["query-labels"].message
    )
    assert setup.did not in findings["query-labels"].message

    del setup.plc.documents[former]
    findings = await setup.run()
    assert f"of {former} cannot be verified" in findings["query-labels"].message


async def test_bad_signatures_past_the_oldest_labels_are_found(setup: Setup) -> None:
    """The first page verifies; the newest labels, badly signed, are what consumers are receiving now."""
    post = "at://did:plc:someoneelsesomeoneelse2/app.bsky.feed.post/"
    good = [Label(setup.did, f"{post}good{n}", DECLARED, syntax.now()) for n in range(60)]
    await seed_labels(setup.labeler, good)
    bad = [Label(setup.did, f"{post}bad{n}", DECLARED, syntax.now()) for n in range(3)]
    await seed_labels(setup.labeler, bad, signer=SigningKey.generate())
    findings = await setup.run()
    assert failing(findings) == {"query-labels", "subscribe-labels"}
    assert "3 of " in findings["query-labels"].message
    assert f"3 of {WINDOW} newest labels on the stream of {setup.did}" in findings["subscribe-labels"].message


async def test_samples_cover_the_oldest_a_random_and_the_newest_window(setup: Setup) -> None:
    post = "at://did:plc:someoneelsesomeoneelse2/app.bsky.feed.post/"
    await seed_labels(setup.labeler, [Label(setup.did, f"{post}{n}", DECLARED, syntax.now()) for n in range(80)])
    async with setup.labeler.engine.connect() as conn:
        seqs = [row[0] for row in await conn.execute(sa.select(labels.c.seq).order_by(labels.c.seq))]
    (ours,) = await sample_sources(setup.labeler.engine, WINDOW, random.Random(7))
    assert ours.src == setup.did
    assert ours.cursors[0] == seqs[0] - 1 and ours.cursors[-1] == seqs[-WINDOW] - 1
    assert len(ours.cursors) == 3 and seqs[0] - 1 < ours.cursors[1] < seqs[-1]
    assert await stream_cursor(setup.labeler.engine, WINDOW) == seqs[-WINDOW] - 1


async def test_negated_and_expired_values_need_no_declaration(setup: Setup) -> None:
    subject = "did:plc:someoneelsesomeoneelse2"
    await setup.labeler.writer.write([LabelRequest(uri=subject, val="spam")])
    await setup.labeler.writer.write([LabelRequest(uri=subject, val="spam", neg=True)])
    await setup.labeler.writer.write([LabelRequest(uri=subject, val="old-news", exp="2001-01-01T00:00:00.000Z")])
    await seed_labels(setup.labeler, [Label(setup.did, subject, "Bad Value", syntax.now(), neg=True)])
    findings = await setup.run()
    assert not failing(findings), findings
    await setup.labeler.writer.write([LabelRequest(uri=subject, val="spam")])  # in force again
    findings = await setup.run()
    assert failing(findings) == {"declared-values"}
    assert "spam" in findings["declared-values"].message


async def test_unreachable_plc_is_named(setup: Setup) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    setup.plc_url = closed
    findings = await setup.run()
    document = findings["did-document"]
    assert document.status == "fail"
    assert f"from {closed}/{setup.did}" in document.message
    assert document.fix is not None and closed in document.fix and "LABELER_PLC_URL" in document.fix
    assert "did create" not in document.fix


async def test_local_did_web_names_the_insecure_setting(setup: Setup) -> None:
    findings = await setup.run(did=f"did:web:localhost%3A{setup.live.port}")
    document = findings["did-document"]
    assert document.status == "fail"
    assert document.fix is not None and "LABELER_ALLOW_INSECURE_DID_WEB" in document.fix


async def test_labels_on_our_own_content_warn(setup: Setup) -> None:
    await setup.labeler.writer.write([LabelRequest(uri=f"at://{setup.did}/app.bsky.feed.post/3k", val=DECLARED)])
    findings = await setup.run()
    assert findings["own-content"].status == "warn" and "1 labels" in findings["own-content"].message
    assert healthy(list(findings.values()))


async def test_stream_behind_our_database(setup: Setup) -> None:
    future = (await setup.labeler.store.head()) + 1_000_000
    findings = await setup.run(head=future, stream_from=future)
    assert failing(findings) == {"subscribe-labels"}
    assert "FutureCursor" in findings["subscribe-labels"].message


async def test_unknown_did(setup: Setup) -> None:
    del setup.plc.documents[setup.did]
    findings = await setup.run()
    assert failing(findings) == {"did-document"}
    assert findings["label-key"].status == "skip"


async def test_cli_exit_code_and_json(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LABELER_"):
            monkeypatch.delenv(name)
    env = {
        "LABELER_DATABASE_URL": setup.settings.database_url,
        "LABELER_KEYS_DIR": str(setup.settings.keys_dir),
        "LABELER_DID": setup.did,
        "LABELER_PUBLIC_URL": setup.endpoint,
        "LABELER_PLC_URL": setup.plc_url,
    }

    def doctor() -> tuple[int, dict[str, Any]]:
        result = CliRunner().invoke(cli, ["doctor", "--json", "--wait", "0.3"], env=env, catch_exceptions=False)
        return result.exit_code, json.loads(result.output)

    code, report = await asyncio.to_thread(doctor)
    assert code == 0 and report["healthy"] is True, report
    setup.publish_document(label=SigningKey.generate())
    code, report = await asyncio.to_thread(doctor)
    assert code == 1 and report["healthy"] is False
    failed = {c["check"] for c in report["checks"] if c["status"] == "fail"}
    assert failed == {"label-key", "query-labels", "subscribe-labels"}


def test_a_value_with_a_trailing_newline_is_a_value_problem() -> None:
    assert value_problem("spam-bot") is None
    assert value_problem("spam-bot\n") is not None  # `$` alone would let it through


async def test_appview_on_a_private_address_is_refused_unless_allowed() -> None:
    """`--appview` goes out through labeler.outbound: a loopback AppView needs LABELER_ALLOW_PRIVATE_FETCH."""
    async with httpx.AsyncClient(transport=public_transport(), trust_env=False) as http:
        finding = await check_appview(http, "http://127.0.0.1:9", "did:plc:someoneelsesomeoneelse2", ("did:x", "spam"))
    assert finding.status == "fail" and "not asking http://127.0.0.1:9" in finding.message
    assert finding.fix is not None and "LABELER_ALLOW_PRIVATE_FETCH" in finding.fix


async def test_appview_without_a_labelled_post_or_account_is_skipped(setup: Setup) -> None:
    await setup.labeler.writer.write([LabelRequest(uri="at://did:plc:someoneelsesomeoneelse2/app.bsky.graph.list/x",
                                                   val=DECLARED)])  # fmt: skip
    facts = await local_facts(setup.settings)
    assert facts.shown_label == ("did:plc:someoneelsesomeoneelse2", DECLARED)  # the account label of the fixture
    await setup.labeler.writer.write([LabelRequest(uri="did:plc:someoneelsesomeoneelse2", val=DECLARED, neg=True)])
    facts = await local_facts(setup.settings)
    assert facts.shown_label is None
    async with httpx.AsyncClient(trust_env=False) as http:
        finding = await check_appview(http, "http://localhost:9", setup.did, facts.shown_label)
    assert finding.status == "skip"
