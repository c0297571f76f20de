"""Importing a bank file from the console's Banks page, over HTTP against a labeler served in-process (SQLite and
PostgreSQL): the import runs in the background while its status page shows the counts, lands through the code
`labeler bank import` runs (the change log keeping who), and its entries match; refusals (not the operator, no
CSRF token, too large, bad rows, not UTF-8, a second import at once) write nothing. Progress is in the database:
another process shows it, the last KEPT are kept, and an import whose process stopped or was killed shows
interrupted."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from support.serve_process import ServeProcess

from labeler.config import Settings
from labeler.console.bank_upload import MAX_UPLOAD_BYTES
from labeler.console.imports import KEPT, BankImports
from labeler.console.moderators import ModeratorStore
from labeler.keys import Keyring
from labeler.pipeline.banks import EntryInput
from labeler.service import Labeler
from labeler.store.console_schema import console_imports
from labeler.store.engine import opened_engine
from labeler.store.pipeline_schema import bank_changes
from labeler.testing import LiveServer, serve_labeler

from .test_http import _csrf, sign_in

HASHES = [f"{random.Random(n).getrandbits(256):064x}" for n in range(2500)]  # three batches of at most 1000
CSV = "hash,external_id,note\n" + "".join(f"{h},case-{n},from the console\n" for n, h in enumerate(HASHES))


async def upload(
    http: httpx.AsyncClient, page: httpx.Response, body: str | bytes, *, name: str = "list.csv", **fields: str
) -> httpx.Response:
    """POST the import form as a browser sends it (multipart, the file and its fields)."""
    data = {"bank": "UPLOADS", **_csrf(page), **fields}
    return await http.post("/console/banks/import", data=data, files={"file": (name, body, "text/csv")})


async def status(http: httpx.AsyncClient, location: str) -> tuple[str, str]:
    page = await http.get(location)
    assert page.status_code == 200, page.text
    found = re.search(r'data-state="(\w+)"', page.text)
    assert found, page.text
    return found.group(1), page.text


async def until_finished(http: httpx.AsyncClient, location: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        state, text = await status(http, location)
        if state != "running":
            return text
        assert time.monotonic() < deadline, text
        await asyncio.sleep(0.05)


async def entries_in(labeler: Labeler, bank: str) -> int:
    return {b.name: b.entries for b in await labeler.pipeline.banks.all_banks()}.get(bank, -1)


def hold_batches(labeler: Labeler, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Hold `labeler`'s bank writes until the event is set, as a long import's batches would hold them."""
    release = asyncio.Event()
    add_entries = labeler.pipeline.banks.add_entries

    async def held(*args: Any, **kwargs: Any) -> int:
        await release.wait()
        return await add_entries(*args, **kwargs)

    monkeypatch.setattr(labeler.pipeline.banks, "add_entries", held)
    return release


async def test_the_operator_imports_a_file_watches_its_progress_and_its_entries_match(
    labeler: Labeler, server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    await labeler.pipeline.banks.create("UPLOADS")
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        assert (await sign_in(http)).status_code == 303
        page = await http.get("/console/banks")
        assert 'action="/console/banks/import"' in page.text and 'enctype="multipart/form-data"' in page.text
        release = hold_batches(labeler, monkeypatch)  # the import waits at its first batch: seen running
        started = await upload(http, page, CSV)
        assert started.status_code == 303, started.text
        location = started.headers["location"]
        assert re.fullmatch(r"/console/banks/imports/[0-9a-f]{16}", location)
        state, text = await status(http, location)
        assert state == "running" and '<meta http-equiv="refresh" content="1">' in text
        assert f"0 of {len(HASHES)} done (0%)" in text and "started by\n  <strong>admin</strong>" in text
        busy = await upload(http, page, CSV)
        assert busy.status_code == 409 and location in busy.text
        listed = await http.get("/console/banks")
        assert location in listed.text and "running" in listed.text
        release.set()
        text = await until_finished(http, location)
        assert f"{len(HASHES)} of {len(HASHES)} done (100%): {len(HASHES)} new" in text, text
        assert "http-equiv" not in text  # no more reloading once it is done
        assert await entries_in(labeler, "UPLOADS") == len(HASHES)

        # The same file again adds nothing (how an interrupted import is finished).
        again = await upload(http, page, CSV)
        text = await until_finished(http, again.headers["location"])
        assert f"0 new,\n  {len(HASHES)} already in the bank" in text, text
        assert await entries_in(labeler, "UPLOADS") == len(HASHES)

        # A new bank, made by the import, from plain text with the signal type chosen.
        md5 = "0123456789abcdef0123456789abcdef"
        made = await upload(http, page, f"{md5} file-1\n", name="x.txt", bank="FILES", create="on", signal="md5")
        assert "1 new" in await until_finished(http, made.headers["location"])

    async with labeler.engine.connect() as conn:
        adds = (await conn.execute(sa.select(bank_changes).where(bank_changes.c.op == "add"))).all()
    assert {(a.bank, a.actor) for a in adds} == {("UPLOADS", "admin"), ("FILES", "admin")}
    assert sum(a.last_id - a.first_id + 1 for a in adds if a.bank == "UPLOADS") == len(HASHES)

    deadline = time.monotonic() + 30  # every process picks the change up from the log; this one too
    while not (matches := await labeler.pipeline.matcher.lookup(HASHES[1234], max_distance=0)):
        assert time.monotonic() < deadline, "the imported hash never matched"
        await asyncio.sleep(0.05)
    assert [(m.bank, m.external_id) for m in matches] == [("UPLOADS", "case-1234")]


async def test_an_upload_is_refused_whole_unless_the_operator_sends_a_good_file_with_the_token(
    labeler: Labeler, server: LiveServer
) -> None:
    await labeler.pipeline.banks.create("UPLOADS")
    await ModeratorStore(labeler.engine).add("bob", "bob-credential-1", actor="test")
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        assert (await sign_in(http, "bob", "bob-credential-1")).status_code == 303
        page = await http.get("/console/banks")
        assert "/console/banks/import" not in page.text  # the form is the operator's alone
        refused = await upload(http, page, CSV)
        assert refused.status_code == 403 and "only the operator" in refused.text

    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        assert (await sign_in(http)).status_code == 303
        page = await http.get("/console/banks")
        no_token = await http.post(
            "/console/banks/import", data={"bank": "UPLOADS"}, files={"file": ("list.csv", CSV, "text/csv")}
        )
        assert no_token.status_code == 403 and "CSRF" in no_token.text

        bad = CSV.splitlines()
        bad[7] = "not-a-hash,case-x"
        bad[2001] = HASHES[0][:-1] + ",case-y"
        malformed = await upload(http, page, "\n".join(bad))
        assert malformed.status_code == 400 and "nothing was imported: 2 bad row(s)" in malformed.text
        assert "list.csv:8: invalid PDQ hash" in malformed.text and "list.csv:2002:" in malformed.text

        oversize = await upload(http, page, b"#" * (MAX_UPLOAD_BYTES + 1))
        assert oversize.status_code == 413 and "larger than 16 MiB" in oversize.text
        assert "labeler bank import" in oversize.text

        latin1 = await upload(http, page, f"{HASHES[0]},caf\xe9\n".encode("latin-1"))
        assert latin1.status_code == 400 and "not UTF-8" in latin1.text
        empty = await upload(http, page, "# only a comment\n")
        assert empty.status_code == 400 and "no hashes" in empty.text
        unknown = await upload(http, page, CSV, bank="NO_SUCH_BANK")
        assert unknown.status_code == 400 and "no bank named &#39;NO_SUCH_BANK&#39;" in unknown.text
        wrong_type = await upload(http, page, CSV, signal="md5")
        assert wrong_type.status_code == 400 and "holds pdq hashes, not md5" in wrong_type.text
        not_multipart = await http.post("/console/banks/import", data={"bank": "UPLOADS", **_csrf(page)})
        assert not_multipart.status_code == 415
        for refusal in (no_token, malformed, oversize, latin1, not_multipart):
            assert "default-src 'none'" in refusal.headers["content-security-policy"]  # the console's error page
        assert (await http.get("/console/banks/imports/0123456789abcdef")).status_code == 404
        assert (await http.get("/console/banks/imports/<b>")).status_code == 404

    assert await entries_in(labeler, "UPLOADS") == 0
    async with labeler.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(bank_changes))).scalar_one() == 0


async def test_the_last_imports_are_kept_and_older_ones_forgotten(labeler: Labeler, server: LiveServer) -> None:
    await labeler.pipeline.banks.create("UPLOADS")
    imports = BankImports(labeler.pipeline.banks)  # as another process's console runs them
    ids = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        assert (await sign_in(http)).status_code == 303
        for n in range(KEPT + 1):
            job = await imports.start(
                "UPLOADS", [EntryInput(HASHES[n])], filename=f"{n}.txt", signal_type="pdq", create=False, actor="admin"
            )
            ids.append(job.id)
            assert "1 new" in await until_finished(http, f"/console/banks/imports/{job.id}")
        assert [job.id for job in await imports.recent()] == ids[:0:-1]  # newest first; the first is forgotten
        assert (await http.get(f"/console/banks/imports/{ids[0]}")).status_code == 404
        listed = (await http.get("/console/banks")).text
        assert ids[0] not in listed and all(i in listed for i in ids[1:])


async def test_every_process_shows_an_import_and_one_stopped_with_its_labeler_shows_interrupted(
    labeler: Labeler, server: LiveServer, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status page and the Banks page read the import from the database, so a second process serving the
    same database shows an import the first runs (it refuses a second import meanwhile); stopping the first's
    app stops the import and every process shows it interrupted, and the same file from the second finishes it."""
    await labeler.pipeline.banks.create("UPLOADS")
    release = hold_batches(labeler, monkeypatch)
    other = Labeler(settings, with_hub=False)  # as a second serving process (PostgreSQL) sees the database
    await other.start(create_dev_key=False)
    try:
        async with (
            serve_labeler(other) as second,
            httpx.AsyncClient(base_url=server.url, timeout=60) as first_http,
            httpx.AsyncClient(base_url=second.url, timeout=60) as second_http,
        ):
            assert (await sign_in(first_http)).status_code == 303
            assert (await sign_in(second_http)).status_code == 303
            started = await upload(first_http, await first_http.get("/console/banks"), CSV)
            assert started.status_code == 303, started.text
            location = started.headers["location"]
            state, text = await status(second_http, location)
            assert state == "running" and f"0 of {len(HASHES)} done (0%)" in text
            banks_page = await second_http.get("/console/banks")
            assert location in banks_page.text
            busy = await upload(second_http, banks_page, CSV)
            assert busy.status_code == 409 and location in busy.text

            await server.app.state.console_imports.aclose()  # what the first's app does as it stops
            state, text = await status(second_http, location)
            assert state == "interrupted" and "Interrupted\n  after 0 of" in text and "the labeler stopped" in text
            assert "http-equiv" not in text
            listed = await second_http.get("/console/banks")
            assert re.search(rf'{location}">list.csv</a></td>\s*<td class="state">interrupted<', listed.text)

            again = await upload(second_http, listed, CSV)
            assert again.status_code == 303, again.text
            text = await until_finished(second_http, again.headers["location"])
            assert f"{len(HASHES)} new" in text, text
        assert await entries_in(other, "UPLOADS") == len(HASHES)
    finally:
        release.set()
        await other.aclose()


async def test_an_import_whose_process_was_killed_shows_interrupted_after_a_restart(
    settings: Settings, tmp_path: Path
) -> None:
    """`labeler serve` stopped (SIGSTOP) as soon as it has answered the upload, in the middle of the import, then
    killed (SIGKILL: no chance to write anything): once the import's lease has run out, the restarted labeler
    shows it interrupted with the count it reached, not running for ever, and the same file finishes it."""
    hashes = [f"{random.Random(n).getrandbits(256):064x}" for n in range(50_000)]  # 50 batches
    body = "".join(f"{h},case-{n}\n" for n, h in enumerate(hashes))
    Keyring.open(settings.keys_dir).generate()  # the operator's key: serve makes none for a did:plc
    before = Labeler(settings, with_hub=False)
    await before.start(create_dev_key=False)
    try:
        await before.pipeline.banks.create("UPLOADS")
    finally:
        await before.aclose()
    assert settings.keys_dir == tmp_path / "keys"  # where ServeProcess keeps them
    process = ServeProcess("serve", settings.database_url, tmp_path, password=settings.admin_password, did=settings.did)
    try:
        await process.start()
        assert process.proc is not None
        async with httpx.AsyncClient(base_url=process.url, timeout=60) as http:
            assert (await sign_in(http)).status_code == 303
            started = await upload(http, await http.get("/console/banks"), body)
            os.kill(process.proc.pid, signal.SIGSTOP)
            assert started.status_code == 303, started.text
            location = started.headers["location"]
        async with opened_engine(settings.database_url) as engine, engine.connect() as conn:
            query = sa.select(console_imports.c.state, console_imports.c.done)
            [(state, done)] = (await conn.execute(query)).all()
        assert state == "running" and done < len(hashes), (state, done)
        await process.kill()
    finally:
        await process.stop()

    restarted = Labeler(settings)
    await restarted.start()
    try:
        async with serve_labeler(restarted) as live, httpx.AsyncClient(base_url=live.url, timeout=60) as http:
            assert (await sign_in(http)).status_code == 303
            deadline = time.monotonic() + 60  # the killed process's lease runs out (LEASE_SECONDS)
            while (found := await status(http, location))[0] == "running":
                assert time.monotonic() < deadline, found[1]
                await asyncio.sleep(0.5)
            state, text = found
            assert state == "interrupted" and f"Interrupted\n  after {done} of {len(hashes)}: " in text, text
            assert "the labeler process running it stopped before it finished" in text
            # The batch being recorded when the process stopped may have landed unrecorded; none after it.
            present = await entries_in(restarted, "UPLOADS")
            assert done <= present < len(hashes), (done, present)
            finish = await upload(http, await http.get("/console/banks"), body)
            text = await until_finished(http, finish.headers["location"])
            assert f"{len(hashes) - present} new,\n  {present} already in the bank" in text, text
    finally:
        await restarted.aclose()
