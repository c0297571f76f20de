"""`labeler doctor` against local stand-ins: a fake PLC with our DID document, a fake PDS holding the
declaration, and our labeler served by real uvicorn at `http://localhost:PORT`. Each broken setup is detected
by the check named for it, and a healthy setup passes."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from support.fake_pds import FakePds, running_fake_pds
from support.fake_plc import FakePlc, did_document, new_plc_did, running_fake_plc
from support.server import RunningServer

from labeler.cli import cli
from labeler.cli.doctor import local_facts
from labeler.config import Settings
from labeler.identity.declare import COLLECTION, RKEY, build_record, value_problem
from labeler.identity.doctor import Finding, LocalFacts, diagnose, healthy
from labeler.identity.resolver import DidResolver
from labeler.labels.writer import LabelRequest
from labeler.protocol import syntax
from labeler.protocol.crypto import SigningKey
from labeler.protocol.label import Label
from labeler.service import Labeler
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
    assert "1 sampled labels verify" in findings["query-labels"].message


async def test_wrong_key_in_the_did_document(setup: Setup) -> None:
    setup.publish_document(label=SigningKey.generate())
    findings = await setup.run()
    assert failing(findings) == {"label-key", "query-labels"}
    assert "consumers reject every label" in findings["label-key"].message
    assert findings["label-key"].fix


async def test_missing_label_key(setup: Setup) -> None:
    document = did_document(setup.did, labeler=setup.endpoint, pds=setup.pds_url, handle=None)
    setup.plc.put(setup.did, document)
    assert failing(await setup.run()) == {"label-key", "query-labels"}


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
    info, key = setup.labeler.keyring.active()
    label = Label(setup.did, "did:plc:someoneelsesomeoneelse2", "Bad Value", syntax.now()).signed(key)
    async with setup.labeler.engine.begin() as conn:
        await conn.execute(
            labels.insert().values(
                seq=await setup.labeler.store.head() + 1, src=label.src, uri=label.uri, cid="", val=label.val,
                neg=False, cts=label.cts, exp=None, sig=label.sig, key_id=info.id,
            )
        )  # fmt: skip
    setup.pds.records[(setup.did, COLLECTION, RKEY)]["policies"]["labelValues"].append("Bad Value")
    findings = await setup.run()
    assert "value-syntax" in failing(findings)
    assert "'Bad Value' does not match ^[a-z-]+$" in findings["value-syntax"].message


async def test_labels_on_our_own_content_warn(setup: Setup) -> None:
    await setup.labeler.writer.write([LabelRequest(uri=f"at://{setup.did}/app.bsky.feed.post/3k", val=DECLARED)])
    findings = await setup.run()
    assert findings["own-content"].status == "warn" and "1 labels" in findings["own-content"].message
    assert healthy(list(findings.values()))


async def test_stream_behind_our_database(setup: Setup) -> None:
    findings = await setup.run(head=(await setup.labeler.store.head()) + 1_000_000)
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
    assert {c["check"] for c in report["checks"] if c["status"] == "fail"} == {"label-key", "query-labels"}


def test_a_value_with_a_trailing_newline_is_a_value_problem() -> None:
    assert value_problem("spam-bot") is None
    assert value_problem("spam-bot\n") is not None  # `$` alone would let it through
