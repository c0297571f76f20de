"""A real `labeler serve` (a subprocess on loopback) with review items the pipeline made, for the console's tests.

The pipeline runs first, in this process, against a fake PLC and PDS: one account's posts (POSTS) whose images
are 12 to 29 bits from hashes in the bank NEAR, so each becomes a pending review item (the default rule labels at
once up to distance 10 and sends 11-31 to a person); two accounts are reported and a third appeals. Then
`labeler serve` starts on the same SQLite file, with one pipeline worker and the PDS still up, so the console
fetches the images and posts as it would from a real PDS.

The browser tests' screenshots go to SCREENSHOTS (`CONSOLE_SCREENSHOTS` if set, else `build/console-screenshots`
in the checkout); when a run took any, its terminal summary names the folder (a fixture's own output would be
swallowed by pytest's capture).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from pipeline.blob_server import PdsWorld
from pipeline.conftest import FAST_PIPELINE
from pipeline.corpus import encode, flip_bits, structured_rgb
from pipeline.harness import all_done
from support.fake_plc import new_plc_did, running_fake_plc
from support.server import free_port

from labeler.config import Settings, load_settings
from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.jobs import JobSpec
from labeler.service import Labeler

CHECKOUT = Path(__file__).resolve().parents[2]  # `serve` runs this checkout's labeler, not an installed one
SCREENSHOTS = Path(os.environ.get("CONSOLE_SCREENSHOTS") or CHECKOUT / "build/console-screenshots")
SCREENSHOTS_TAKEN = pytest.StashKey[Path]()
ADMIN_PASSWORD = "test-admin-password"
LABELER_DID = "did:plc:labelertestlabelertest1"
VIOLATION = "com.atproto.moderation.defs#reasonViolation"
APPEAL = "com.atproto.moderation.defs#reasonAppeal"
T = TypeVar("T")

#: Name → (image seed, bits from the banked hash). Closer matches come first in the queue.
POSTS = {
    "confirm": (31, 12),
    "false-positive": (32, 15),
    "keyboard": (33, 18),
    "bulk-1": (34, 20),
    "bulk-2": (35, 22),
    "relaxed": (37, 24),
    "keyboard-confirm": (38, 25),
    "keyboard-false-positive": (39, 26),
    "keyboard-allow-list": (40, 27),
    "keyboard-bulk-1": (41, 28),
    "keyboard-bulk-2": (42, 29),
    "eleventh-other": (43, 30),  # so each card has one more of the account's other matches than it shows
}
#: The "confirm" post's text and its link facets (byte ranges of UTF-8), one web link and one that is not.
LINKED_TEXT = "post confirm <b> · the café's site · a script"
WEB_LINK, SCRIPT_LINK = "https://example.com/case?a=1&b=<2>", "javascript:alert(1)"


def _facet(text: str, covered: str, uri: str) -> dict[str, object]:
    start = text.encode().index(covered.encode())
    index = {"byteStart": start, "byteEnd": start + len(covered.encode())}
    return {"index": index, "features": [{"$type": "app.bsky.richtext.facet#link", "uri": uri}]}


LINK_FACETS = [_facet(LINKED_TEXT, "the café's site", WEB_LINK), _facet(LINKED_TEXT, "a script", SCRIPT_LINK)]
ALLOW_LIST = "ALLOW_LIST"  # [actions] allow_list_bank, so the queue offers "reject and allow-list" (a)


@dataclass
class Served:
    """The running console and what the test needs to check it: item ids and subjects by name, the images."""

    url: str
    settings: Settings
    world: PdsWorld
    items: dict[str, int] = field(default_factory=dict)
    reported: dict[str, str] = field(default_factory=dict)  # name → reported account
    specs: dict[str, JobSpec] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)

    async def with_labeler(self, work: Callable[[Labeler], Awaitable[T]]) -> T:
        """`work` on a second Labeler on the database (no stream hub, so not exclusive), as the CLI runs."""
        labeler = Labeler(self.settings, with_hub=False)
        await labeler.start(create_dev_key=False)
        try:
            return await work(labeler)
        finally:
            await labeler.aclose()


def run_async(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` on its own event loop in another thread: Playwright's sync API owns this thread's loop."""
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(_call(work)))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def _call(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


async def _queue_items(served: Served) -> None:
    labeler = Labeler(served.settings)
    await labeler.start(workers=1)
    try:
        await labeler.pipeline.banks.create("NEAR")
        did = served.world.account()
        for name, (seed, bits) in POSTS.items():
            data = encode(structured_rgb(200, 150, seed=seed), "PNG")
            ref = served.world.pds.add(did, data)
            spec = JobSpec("firehose", f"at://{did}/app.bsky.feed.post/{name.replace('-', '')}", ref.blob_cid, ref)
            banked = flip_bits(hash_image(data).hash, bits, seed=seed)
            await labeler.pipeline.banks.add_entries("NEAR", [EntryInput(banked, external_id=f"case-{name}")])
            served.images[name], served.specs[name] = data, spec
            record = {"$type": "app.bsky.feed.post", "text": f"post {name} <b>", "createdAt": "2026-12-01T00:00:00Z"}
            if name == "confirm":
                record.update(text=LINKED_TEXT, facets=LINK_FACETS)
            served.world.pds.records[spec.subject_uri] = (spec.subject_cid, record)
        reporter = new_plc_did()
        for name in ("acknowledge", "label"):
            account = served.reported[name] = new_plc_did()
            subject = {"$type": "com.atproto.admin.defs#repoRef", "did": account}
            await labeler.reports.submit(
                {"reasonType": VIOLATION, "subject": subject, "reason": f"{name} me"}, reporter
            )
        appellant = served.reported["appeal"] = new_plc_did()  # an account contesting our labels on itself
        subject = {"$type": "com.atproto.admin.defs#repoRef", "did": appellant}
        await labeler.reports.submit({"reasonType": APPEAL, "subject": subject, "reason": "not spam"}, appellant)
        await labeler.pipeline.jobs.enqueue(list(served.specs.values()))
        await all_done(labeler, len(POSTS))
        for item in await labeler.pipeline.reviews.list():
            [name] = [n for n, s in served.specs.items() if s.subject_uri == item.subject_uri]
            served.items[name] = item.id
    finally:
        await labeler.aclose()
    assert sorted(served.items) == sorted(POSTS), served.items


def _toml(sections: dict[str, dict[str, object]]) -> str:
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items()) for name, values in sections.items()
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("console")
    port = free_port()
    with running_fake_plc() as (plc, plc_server):
        world = PdsWorld(plc, plc_server, free_port())
        values = {
            "database_url": f"sqlite+aiosqlite:///{workdir / 'labeler.db'}",
            "keys_dir": str(workdir / "keys"),
            "admin_password": ADMIN_PASSWORD,
            "did": LABELER_DID,
            "plc_url": world.plc_url,
            "allow_private_fetch": "true",
            "port": str(port),
            "public_url": f"http://localhost:{port}",
            "workers": "1",
            "log_level": "warning",
        }
        sections: dict[str, dict[str, object]] = {"pipeline": FAST_PIPELINE, "actions": {"allow_list_bank": ALLOW_LIST}}
        settings = load_settings(env={}, **values, extra=sections)
        (workdir / "labeler.toml").write_text(_toml(sections))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LABELER_")}
        env.update({f"LABELER_{k.upper()}": v for k, v in values.items()}, LABELER_CONFIG=str(workdir / "labeler.toml"))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CHECKOUT), env.get("PYTHONPATH")]))
        served = Served(f"http://127.0.0.1:{port}", settings, world)
        with world.pds_running():
            run_async(lambda: _queue_items(served))
            log = (workdir / "serve.log").open("wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "labeler", "serve"], env=env, cwd=workdir, stdout=log, stderr=log
            )
            try:
                _wait_healthy(proc, served.url, workdir / "serve.log")
                yield served
            finally:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=20)
                proc.kill()
                log.close()


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"labeler serve exited with {proc.returncode}: {log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/xrpc/_health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"labeler serve did not become healthy: {log.read_text(errors='replace')[-3000:]}")


@pytest.fixture
def pds_world() -> Iterator[PdsWorld]:
    """A fake PLC (running) and a PDS stand-in on a reserved port, for tests with an in-process labeler."""
    with running_fake_plc() as (plc, plc_server):
        yield PdsWorld(plc, plc_server, free_port())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Name the screenshots' folder after the run, where CI's log and a person both see it."""
    folder = config.stash.get(SCREENSHOTS_TAKEN, None)
    if folder is not None:
        terminalreporter.write_sep("-", "console screenshots")
        terminalreporter.write_line(f"console screenshots: {folder}")
