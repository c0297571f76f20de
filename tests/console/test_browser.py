"""The console in a real browser (Debian's headless Chromium, driven by Playwright) against a real `labeler serve`
whose review items the pipeline made: sign-in, the blurred queue, reveal, confirm, reject as a false positive,
CSRF, sign-out, the whole review flow from the keyboard alone, a bank file imported from the Banks page, an import
another process stopped shown interrupted, the audit logs, and a reviewer's relaxed blur.

Screenshots of each page go to `conftest.SCREENSHOTS`, which the run's terminal summary names (CI keeps it as an
artefact): `CONSOLE_SCREENSHOTS` if set, else `build/console-screenshots` in the checkout.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pipeline.corpus import encode, flip_bits, structured_rgb

from labeler.console.imports import BankImports
from labeler.console.moderators import ModeratorStore
from labeler.pipeline.banks import EntryInput
from labeler.pipeline.hasher import hash_image
from labeler.pipeline.jobs import JobSpec
from labeler.service import Labeler

from .conftest import (
    ADMIN_PASSWORD,
    ALLOW_LIST,
    LINKED_TEXT,
    POSTS,
    SCREENSHOTS,
    SCREENSHOTS_TAKEN,
    SCRIPT_LINK,
    WEB_LINK,
    Served,
    run_async,
)

IN_CI = os.environ.get("CI") == "true"
CHROMIUM = Path("/usr/bin/chromium")

try:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Locator, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra brings it
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    missing = []
    if sync_playwright is None:
        missing.append("the playwright package (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (make console-deps, or: apt-get install -y chromium)")
    if missing:
        message = "the console's browser tests need " + " and ".join(missing)
        if IN_CI:
            pytest.fail(message + " (CI=true requires them)", pytrace=False)
        pytest.skip(message)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    request.config.stash[SCREENSHOTS_TAKEN] = SCREENSHOTS
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport={"width": 1200, "height": 900})
    made.set_default_timeout(15_000)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A tab that fails the test on any CSP violation or script error (an HTTP error status is not one)."""
    opened = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda e: problems.append(str(e)))
    yield opened
    assert not problems, problems


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, served: Served, user: str = "admin", credential: str = ADMIN_PASSWORD) -> None:
    page.goto(f"{served.url}/console/")
    expect(page).to_have_url(f"{served.url}/console/login")
    page.fill("#user", user)
    page.fill("#credential", credential)
    page.click("#sign-in")
    expect(page).to_have_url(f"{served.url}/console/queue")


def api(served: Served, path: str) -> dict:  # type: ignore[type-arg]
    response = httpx.get(served.url + path, auth=("admin", ADMIN_PASSWORD), timeout=10)
    assert response.status_code == 200, response.text
    data: dict = response.json()  # type: ignore[type-arg]
    return data


def eventually(check: Callable[[], bool], what: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def labels_on(served: Served, uri: str) -> list[str]:
    return [label["val"] for label in api(served, f"/xrpc/com.atproto.label.queryLabels?uriPatterns={uri}")["labels"]]


def test_a_page_without_a_session_goes_to_sign_in_and_a_wrong_credential_is_refused(page: Page, served: Served) -> None:
    page.goto(f"{served.url}/console/queue")
    expect(page).to_have_url(f"{served.url}/console/login")
    shot(page, "sign-in")
    page.fill("#user", "admin")
    page.fill("#credential", "not the password")
    page.click("#sign-in")
    expect(page.locator(".error .message")).to_have_text("wrong name or credential")
    headers = httpx.get(f"{served.url}/console/login").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer" and headers["x-frame-options"] == "DENY"


def test_a_moderator_sees_the_item_blurred_reveals_it_and_confirms_it(page: Page, served: Served) -> None:
    run_async(
        lambda: served.with_labeler(
            lambda lab: ModeratorStore(lab.engine).add("alice", "alice-credential-1", actor="test")
        )
    )
    sign_in(page, served, "alice", "alice-credential-1")
    item = served.items["confirm"]
    card = page.locator(f"#item-{item}")
    image = card.locator("img")
    expect(card.locator(".bank")).to_have_text("NEAR")
    expect(card.locator(".distance")).to_have_text("12")
    expect(card.locator(".entry")).to_contain_text("case-confirm")
    expect(card.locator(".post-text")).to_have_text(LINKED_TEXT)  # from the PDS, escaped
    # The post's links, from its facets: a web link that sends no referrer and is not followed, the other as text.
    [web, script] = card.locator(".links li").all()
    expect(web).to_contain_text("“the café's site”")
    expect(web.locator("a.link")).to_have_attribute("href", WEB_LINK)
    expect(web.locator("a.link")).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(script).to_contain_text("“a script”")
    expect(script.locator("a")).to_have_count(0)
    expect(script.locator("code.link")).to_have_text(SCRIPT_LINK)
    # The author by the handle their DID document claims (the fake PLC's alice.test), and by DID.
    did = served.specs["confirm"].subject_uri.split("/")[2]
    expect(card.locator(".author .handle")).to_have_text("@alice.test")
    expect(card.locator(".author code")).to_have_text(did)
    expect(page.locator(".card").first).to_have_id(f"item-{item}")  # the closest match comes first
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert "blur" in image.evaluate("img => getComputedStyle(img).filter")
    assert "grayscale" in image.evaluate("img => getComputedStyle(img).filter")
    shot(page, "queue-blurred")
    card.locator("[data-reveal]").click()
    expect(card).to_have_class("card current revealed")
    page.wait_for_function("img => getComputedStyle(img).filter === 'none'", arg=image.element_handle())
    shot(page, "queue-revealed")
    # Revealing another item hides this one: never two at once.
    other = page.locator(f"#item-{served.items['keyboard']}")
    other.locator("[data-reveal]").click()
    expect(card).not_to_have_class("card revealed")
    other.locator("[data-reveal]").click()

    card.locator("textarea").fill("matches the case file")
    card.locator("button[value=confirm]").click()
    expect(page.locator("#flash")).to_contain_text(f"#{item}: confirm")
    expect(page.locator(f"#item-{item}")).to_have_count(0)
    shot(page, "queue-after-confirm")
    # The posts share one account: each card lists its other matches, decided ones too, newest first, at most 10.
    others = page.locator(f"#item-{served.items['keyboard']} .others li")
    newest = sorted((i for n, i in served.items.items() if n != "keyboard"), reverse=True)[:10]
    expect(others.locator("a")).to_have_text([f"#{i}" for i in newest])
    uri = served.specs["confirm"].subject_uri
    eventually(lambda: labels_on(served, uri) == ["csam-hash-match"], "the confirmed label in queryLabels")
    decided = api(served, f"/api/v1/review/{item}")
    assert (decided["status"], decided["decided_by"], decided["decided_via"], decided["decision_note"]) == (
        "confirmed", "moderator:alice", "console", "matches case file".replace("matches", "matches the"),
    )  # fmt: skip
    card_history = f"{served.url}/console/history?uri={uri}"
    page.goto(card_history)
    shot(page, "history")
    expect(page.locator("tr.review")).to_contain_text("moderator:alice")
    expect(page.locator("tr.review")).to_contain_text("matches the case file")
    expect(page.locator("tr.event")).to_contain_text("+csam-hash-match")
    expect(page.locator("tr.action", has_text="label apply")).to_contain_text("moderator:alice")
    run_async(lambda: served.with_labeler(lambda lab: ModeratorStore(lab.engine).remove("alice")))
    page.reload()  # a removed moderator's session ends at the next request
    expect(page).to_have_url(f"{served.url}/console/login")


def test_rejecting_as_a_false_positive_disables_the_entry_and_the_image_no_longer_queues(
    page: Page, served: Served
) -> None:
    sign_in(page, served)
    item = served.items["false-positive"]
    card = page.locator(f"#item-{item}")
    card.locator("button[value=disable-entry]").click()
    expect(page.locator("#flash")).to_contain_text(f"#{item}: disable-entry")
    decided = api(served, f"/api/v1/review/{item}")
    assert (decided["status"], decided["decided_by"]) == ("rejected", "admin")
    entry = decided["evidence"]["match"]["entry_id"]
    states = run_async(lambda: served.with_labeler(lambda lab: lab.pipeline.screen.states()))
    assert [(s.bank, s.entry_id, s.mode, s.actor) for s in states] == [("NEAR", entry, "disabled", "admin")]

    # The same image in a new post: the serve process's worker matches it, the disabled entry queues nothing.
    original = served.specs["false-positive"]
    again = JobSpec("firehose", original.subject_uri + "again", original.image.blob_cid, original.image)

    async def enqueue_and_wait(labeler: Labeler) -> list[str]:
        await labeler.pipeline.jobs.enqueue([again])
        for _ in range(300):
            [job] = await labeler.pipeline.jobs.for_subject(again.subject_uri)
            if job.status == "done":
                items = await labeler.pipeline.reviews.list(status=None, subject_uri=again.subject_uri)
                return [i.status for i in items]
            await asyncio.sleep(0.1)
        raise AssertionError(f"the job for {again.subject_uri} is still {job.status}")

    assert run_async(lambda: served.with_labeler(enqueue_and_wait)) == []
    page.reload()
    expect(page.locator(".card", has_text=again.subject_uri)).to_have_count(0)
    assert labels_on(served, again.subject_uri) == []

    page.click("nav >> text=Banks")
    row = page.locator("table.states tr", has_text=f"false positive: review item {item} rejected by admin")
    expect(row.locator(".mode")).to_have_text("disabled")
    shot(page, "banks")
    row.locator("input[name=reason]").fill("the bank fixed the hash")
    row.locator("button", has_text="Match again").click()
    expect(page.locator("table.states")).to_contain_text("None.")
    assert run_async(lambda: served.with_labeler(lambda lab: lab.pipeline.screen.states())) == []

    # The Banks page's own form: disable an entry by name, with a reason.
    form = page.locator("form.entry-state")
    form.locator("input[name=bank]").fill("NEAR")
    form.locator("input[name=entry_id]").fill(entry)
    form.locator("input[name=reason]").fill("a logo, not abuse")
    form.locator("button", has_text="Disable the entry").click()
    row = page.locator("table.states tr", has_text="a logo, not abuse")
    expect(row.locator(".mode")).to_have_text("disabled")
    states = run_async(lambda: served.with_labeler(lambda lab: lab.pipeline.screen.states()))
    assert [(s.bank, s.entry_id, s.mode, s.actor, s.reason) for s in states] == [
        ("NEAR", entry, "disabled", "admin", "a logo, not abuse")
    ]

    # Who did each of the three, through what and why: the audit log keeps them, the cleared one too.
    page.click("nav >> text=Audit log")
    page.click("text=Entry changes")
    shot(page, "audit-entries")
    changes = page.locator("tr.entry-change", has=page.locator(".entry", has_text=re.compile(f"^{entry}$")))
    expect(changes).to_have_count(3)
    for n, (change, why) in enumerate(
        [("disabled", "a logo, not abuse"), ("matching again", "the bank fixed the hash"),
         ("disabled", f"false positive: review item {item} rejected by admin")]
    ):  # fmt: skip
        expect(changes.nth(n).locator(".type")).to_have_text(change)
        expect(changes.nth(n).locator(".who")).to_have_text("admin")
        expect(changes.nth(n).locator(".via")).to_have_text("console")
        expect(changes.nth(n).locator(".why")).to_have_text(why)


def test_a_post_without_the_csrf_token_is_refused_and_sign_out_ends_the_session(page: Page, served: Served) -> None:
    sign_in(page, served)
    item = served.items["keyboard"]
    refused = page.request.post(
        f"{served.url}/console/items/{item}/decide", form={"decision": "confirm"}, max_redirects=0
    )
    assert refused.status == 403 and "CSRF" in refused.text()
    wrong = page.request.post(
        f"{served.url}/console/items/{item}/decide", form={"decision": "confirm", "csrf": "x" * 43}, max_redirects=0
    )
    assert wrong.status == 403
    assert api(served, f"/api/v1/review/{item}")["status"] == "pending"
    [cookie] = [c for c in page.context.cookies() if c["name"] == "labeler_console"]
    page.click("#sign-out")
    expect(page).to_have_url(f"{served.url}/console/login")
    # A copy of the signed-out cookie is refused too.
    copied = httpx.get(f"{served.url}/console/queue", headers={"cookie": f"labeler_console={cookie['value']}"})
    assert copied.status_code == 303 and copied.headers["location"] == "/console/login"
    page.goto(f"{served.url}/console/queue")
    expect(page).to_have_url(f"{served.url}/console/login")
    after = page.request.post(f"{served.url}/console/items/{item}/decide", form={"decision": "confirm"})
    assert after.status == 403
    assert api(served, f"/api/v1/review/{item}")["status"] == "pending"


def make_current_by_keys(page: Page, card: Locator) -> None:
    """Press j until `card` is the current one (the queue starts at its first card after every decision)."""
    expect(page.locator(".card.current")).to_have_count(1)  # the script is running: the first card is current
    for _ in range(len(POSTS)):
        if "current" in (card.get_attribute("class") or ""):
            break
        page.keyboard.press("j")
    expect(card).to_have_class(re.compile(r"\bcurrent\b"))


def test_the_whole_review_flow_from_the_keyboard(page: Page, served: Served) -> None:
    page.goto(f"{served.url}/console/")
    expect(page.locator("#user")).to_be_focused()  # autofocus: applied at a rendering step, not always by "load"
    page.keyboard.type("admin")
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{served.url}/console/queue")
    item = served.items["keyboard"]
    card = page.locator(f"#item-{item}")
    make_current_by_keys(page, card)
    expect(card).to_have_class("card current")
    page.keyboard.press("v")
    expect(card).to_have_class("card current revealed")
    shot(page, "keyboard-revealed")
    page.keyboard.press("n")
    page.keyboard.type("not the same picture")
    page.keyboard.press("Escape")
    page.keyboard.press("v")
    expect(card).to_have_class("card current")
    page.keyboard.press("r")
    expect(page.locator("#flash")).to_contain_text(f"#{item}: reject")
    shot(page, "keyboard-after-reject")
    decided = api(served, f"/api/v1/review/{item}")
    assert (decided["status"], decided["decision_note"]) == ("rejected", "not the same picture")

    def decide_by_key(name: str, key: str, outcome: str) -> dict:  # type: ignore[type-arg]
        item = served.items[name]
        make_current_by_keys(page, page.locator(f"#item-{item}"))
        page.keyboard.press(key)
        expect(page.locator("#flash")).to_contain_text(f"#{item}: {outcome} done")
        expect(page.locator(f"#item-{item}")).to_have_count(0)
        return api(served, f"/api/v1/review/{item}")

    confirmed = decide_by_key("keyboard-confirm", "c", "confirm")
    assert (confirmed["status"], confirmed["decided_by"], confirmed["decided_via"]) == ("confirmed", "admin", "console")
    listed = page.locator(f"#item-{served.items['keyboard-bulk-1']} .others li").filter(
        has=page.get_by_role("link", name=f"#{confirmed['id']}", exact=True)
    )
    expect(listed.locator(".status")).to_have_text("confirmed")  # decided matches stay in the account's list
    uri = served.specs["keyboard-confirm"].subject_uri
    eventually(lambda: labels_on(served, uri) == ["csam-hash-match"], "the label confirmed from the keyboard")

    rejected = decide_by_key("keyboard-false-positive", "f", "disable-entry")
    assert rejected["status"] == "rejected"
    entry = rejected["evidence"]["match"]["entry_id"]
    states = run_async(lambda: served.with_labeler(lambda lab: lab.pipeline.screen.states()))
    assert ("NEAR", entry, "disabled", "admin") in [(s.bank, s.entry_id, s.mode, s.actor) for s in states]

    allowed = decide_by_key("keyboard-allow-list", "a", "allow-list")
    assert allowed["status"] == "rejected"
    banks = run_async(lambda: served.with_labeler(lambda lab: lab.pipeline.banks.all_banks()))
    assert [b.entries for b in banks if b.name == ALLOW_LIST] == [1]  # the image's hash, allow-listed

    bulk = [served.items["keyboard-bulk-1"], served.items["keyboard-bulk-2"]]
    for item in bulk:
        make_current_by_keys(page, page.locator(f"#item-{item}"))
        page.keyboard.press("x")
        expect(page.locator(f"#item-{item} input.select")).to_be_checked()
    page.keyboard.press("b")
    expect(page.locator("#flash")).to_have_text("2 selected item(s): reject done.")
    assert [api(served, f"/api/v1/review/{item}")["status"] for item in bulk] == ["rejected", "rejected"]
    expect(page.locator(".card", has=page.locator("input.select:checked"))).to_have_count(0)


def test_reports_are_acknowledged_and_labelled_and_a_label_is_negated(page: Page, served: Served) -> None:
    sign_in(page, served)
    page.click("nav >> text=Reports")
    acknowledged, labelled = served.reported["acknowledge"], served.reported["label"]
    shot(page, "reports")
    report = page.locator("article.report", has_text=acknowledged)
    expect(report).to_contain_text("reasonViolation")
    report.locator("input[name=comment]").fill("looked, nothing to do")
    report.locator("button[value=acknowledge]").click()
    expect(page.locator("#flash")).to_have_text("acknowledge done.")
    expect(page.locator("article.report", has_text=acknowledged)).to_have_count(0)

    report = page.locator("article.report", has_text=labelled)
    report.locator("input[name=labels]").fill("spam")
    report.locator("input[name=comment]").fill("a spam account")
    report.locator("button[value=label]").click()
    expect(page.locator("#flash")).to_have_text("label done.")
    expect(page.locator("article.report", has_text=labelled)).to_have_count(0)
    appeal = page.locator("article.report", has_text=served.reported["appeal"])
    expect(appeal.locator(".appealed")).to_contain_text("1 open appeal")
    appeal.locator("button[value=resolve-appeal]").click()
    expect(page.locator("#flash")).to_have_text("resolve-appeal done.")
    expect(page.locator("article.report")).to_have_count(0)
    assert labels_on(served, labelled) == ["spam"]
    statuses = {
        s["subject"]["did"]: s["reviewState"]
        for s in api(served, "/xrpc/tools.ozone.moderation.queryStatuses")["subjectStatuses"]
    }
    closed = "tools.ozone.moderation.defs#reviewClosed"
    assert statuses[acknowledged] == statuses[labelled] == statuses[served.reported["appeal"]] == closed

    page.click("nav >> text=Labels")
    page.fill("#q", labelled)
    page.keyboard.press("Enter")
    row = page.locator("tr.label", has_text="spam")
    row.locator("input[name=comment]").fill("appeal upheld")
    shot(page, "labels")
    row.locator("button", has_text="Negate").click()
    expect(page.locator("#flash")).to_have_text("spam negated.")
    served_labels = api(served, f"/xrpc/com.atproto.label.queryLabels?uriPatterns={labelled}")["labels"]
    assert [(label["val"], label.get("neg", False)) for label in served_labels] == [("spam", True)]

    page.click("nav >> text=Audit log")
    shot(page, "audit")
    events = page.locator("tr.event")
    expect(events.first).to_contain_text("modEventLabel")
    expect(events.first).to_contain_text("(admin)")
    expect(events.first).to_contain_text("appeal upheld")
    expect(events.first.locator(".via")).to_have_text("console")
    expect(page.locator("tr.event", has_text="modEventAcknowledge")).to_contain_text("looked, nothing to do")
    page.click("text=Review decisions")
    decision = page.locator("tr.decision", has_text="moderator:alice")
    expect(decision.locator(".via")).to_have_text("console")
    expect(decision).to_contain_text("matches the case file")
    shot(page, "audit-decisions")

    page.click("nav >> text=Banks")
    expect(page.locator("table.banks tr", has_text="NEAR").locator(".entries")).to_have_text(str(len(POSTS)))


def test_selected_items_are_rejected_together(page: Page, served: Served) -> None:
    sign_in(page, served)
    first, second = served.items["bulk-1"], served.items["bulk-2"]
    page.locator(f"#item-{first} input.select").check()
    page.locator(f"#item-{second}").click(position={"x": 5, "y": 5})  # make it the current card
    page.keyboard.press("x")
    expect(page.locator(f"#item-{second} input.select")).to_be_checked()
    page.locator("#bulk input[name=note]").fill("a blank frame, not abuse")
    page.select_option("#bulk-decision", "disable-entry")
    shot(page, "queue-bulk-selected")
    page.click("#bulk-submit")
    expect(page.locator("#flash")).to_have_text("2 selected item(s): disable-entry done.")
    for item in (first, second):
        decided = api(served, f"/api/v1/review/{item}")
        assert (decided["status"], decided["decision_note"]) == ("rejected", "a blank frame, not abuse")
        expect(page.locator(f"#item-{item}")).to_have_count(0)


def test_the_operator_removes_a_bank_after_typing_its_name(page: Page, served: Served) -> None:
    run_async(lambda: served.with_labeler(lambda lab: lab.pipeline.banks.create("SPARE")))
    sign_in(page, served)
    page.click("nav >> text=Banks")
    expect(page.locator("table.banks tr", has_text="SPARE")).to_have_count(1)
    form = page.locator("form.remove-bank")
    form.locator("select[name=bank]").select_option("SPARE")
    form.locator("input[name=confirm]").fill("SPARE")
    shot(page, "banks-remove")
    form.locator("button[type=submit]").click()
    expect(page.locator("#flash")).to_have_text("Removed bank SPARE.")
    expect(page.locator("table.banks tr", has_text="SPARE")).to_have_count(0)
    expect(page.locator("table.banks tr", has_text="NEAR")).to_have_count(1)


def test_the_operator_imports_a_bank_file_watches_it_and_its_entries_match(
    page: Page, served: Served, tmp_path: Path
) -> None:
    image = encode(structured_rgb(200, 150, seed=36), "PNG")
    near = flip_bits(hash_image(image).hash, 14, seed=36)  # close enough to go to review
    filler = [f"{random.Random(n).getrandbits(256):064x}" for n in range(3000)]
    good = tmp_path / "imported.csv"
    good.write_text(
        "hash,external_id\n" + "".join(f"{h},filler-{n}\n" for n, h in enumerate(filler)) + f"{near},case-imported\n"
    )
    bad = tmp_path / "broken.txt"
    bad.write_text(f"{near} case-imported\nnot-a-hash\n")
    sign_in(page, served)

    def fill_in(file: Path) -> None:
        page.goto(f"{served.url}/console/banks")  # the error page has no menu
        form = page.locator("form.import-bank")
        form.locator("input[name=bank]").fill("IMPORTED")
        form.locator("input[name=create]").check()
        form.locator("input[type=file]").set_input_files(str(file))

    fill_in(bad)
    page.click("form.import-bank button[type=submit]")
    expect(page.locator(".error .message")).to_contain_text("nothing was imported: 1 bad row(s)")
    expect(page.locator(".error .details")).to_contain_text("broken.txt:2: invalid PDQ hash")
    shot(page, "bank-import-refused")

    fill_in(good)
    shot(page, "banks-import-form")
    page.click("form.import-bank button[type=submit]")
    expect(page).to_have_url(re.compile(r".*/console/banks/imports/[0-9a-f]{16}$"))
    expect(page.locator("#import-progress")).to_have_attribute("max", str(len(filler) + 1))
    shot(page, "bank-import-progress")  # running or done, whichever it is by now: the counts show either way
    expect(page.locator("#import")).to_have_attribute("data-state", "done", timeout=60_000)  # it reloads itself
    expect(page.locator("#import-counts")).to_contain_text(f"{len(filler) + 1} of {len(filler) + 1} done (100%)")
    expect(page.locator("#import-state")).to_contain_text(f"Done: {len(filler) + 1} entries added to IMPORTED")
    shot(page, "bank-import-done")
    page.click("text=Back to the banks")
    expect(page.locator("table.banks tr", has_text="IMPORTED").locator(".entries")).to_have_text(str(len(filler) + 1))
    expect(page.locator("table.imports tr", has_text="imported.csv").locator(".state")).to_have_text("done")
    page.click("nav >> text=Audit log")
    page.click("text=Bank changes")
    imports = page.locator("tr.bank-change", has_text="IMPORTED")
    expect(imports).to_have_count(4)  # 3,001 entries: one change a batch of 1,000
    expect(imports.first.locator(".who")).to_have_text("admin")
    shot(page, "audit-banks")

    # A post with the image: the serve process's worker matches it against the imported entry.
    did = served.world.account()
    ref = served.world.pds.add(did, image)
    spec = JobSpec("firehose", f"at://{did}/app.bsky.feed.post/imported", ref.blob_cid, ref)

    async def enqueue_and_wait(labeler: Labeler) -> list[dict]:  # type: ignore[type-arg]
        await labeler.pipeline.jobs.enqueue([spec])
        for _ in range(300):
            [job] = await labeler.pipeline.jobs.for_subject(spec.subject_uri)
            if job.status == "done":
                items = await labeler.pipeline.reviews.list(subject_uri=spec.subject_uri)
                return [i.evidence["match"] for i in items]
            await asyncio.sleep(0.1)
        raise AssertionError(f"the job for {spec.subject_uri} is still {job.status}")

    [match] = run_async(lambda: served.with_labeler(enqueue_and_wait))
    assert (match["bank"], match["external_id"], match["distance"]) == ("IMPORTED", "case-imported", 14)
    page.click("nav >> text=Review queue")
    expect(page.locator(".card", has_text=spec.subject_uri).locator(".bank")).to_have_text("IMPORTED")


def test_an_import_stopped_with_its_labeler_shows_interrupted(page: Page, served: Served) -> None:
    """Another labeler process on the database runs a console import and stops after its first batch (what its
    app does as it shuts down): the served console, which never ran it, shows it interrupted at the count it
    reached, with no reloading, and lists it so on the Banks page."""
    entries = [EntryInput(f"{random.Random(n).getrandbits(256):064x}") for n in range(2500)]

    async def start_then_stop(labeler: Labeler) -> str:
        await labeler.pipeline.banks.create("STOPPED")
        add_entries = labeler.pipeline.banks.add_entries
        batches: list[int] = []
        second_batch = asyncio.Event()

        async def stops_at_the_second_batch(*args: Any, **kwargs: Any) -> int:
            batches.append(1)
            if len(batches) > 1:
                second_batch.set()
                await asyncio.Event().wait()  # the process stops here
            return await add_entries(*args, **kwargs)

        labeler.pipeline.banks.add_entries = stops_at_the_second_batch  # type: ignore[method-assign]
        imports = BankImports(labeler.pipeline.banks)
        job = await imports.start(
            "STOPPED", entries, filename="stopped.csv", signal_type="pdq", create=False, actor="admin"
        )
        await second_batch.wait()
        await imports.aclose()
        return job.id

    import_id = run_async(lambda: served.with_labeler(start_then_stop))
    sign_in(page, served)
    page.goto(f"{served.url}/console/banks/imports/{import_id}")
    expect(page.locator("#import")).to_have_attribute("data-state", "interrupted")
    expect(page.locator("#import-counts")).to_contain_text(f"1000 of {len(entries)} done (40%)")
    expect(page.locator("#import-state")).to_contain_text(
        f"Interrupted after 1000 of {len(entries)}: the labeler stopped."
    )
    assert page.locator("meta[http-equiv=refresh]").count() == 0
    shot(page, "bank-import-interrupted")
    page.click("text=Back to the banks")
    row = page.locator("table.imports tr", has_text="stopped.csv")
    expect(row.locator(".state")).to_have_text("interrupted")
    expect(page.locator("table.banks tr", has_text="STOPPED").locator(".entries")).to_have_text("1000")


def test_a_reviewer_relaxes_the_blur_for_themselves_and_images_stay_hidden_until_revealed(
    page: Page, served: Served
) -> None:
    sign_in(page, served)
    card = page.locator(f"#item-{served.items['relaxed']}")
    image = card.locator("img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("img => getComputedStyle(img).filter") == "blur(24px) grayscale(1)"  # the default
    page.click("nav >> text=Settings")
    shot(page, "settings")
    page.check("input[value=blur-colour]")
    page.click("#save-settings")
    expect(page.locator("#flash")).to_have_text("Saved.")
    page.click("nav >> text=Review queue")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert image.evaluate("img => getComputedStyle(img).filter") == "blur(24px)"  # in colour, still blurred
    expect(page.locator("#shortcuts")).to_contain_text("Images stay blurred until you reveal one")
    shot(page, "queue-blur-colour")
    for _ in range(len(POSTS) + 1):  # from the keyboard, as ever: select it and reveal it
        if "current" in (card.get_attribute("class") or ""):
            break
        page.keyboard.press("j")
    expect(card).to_have_class("card current")
    page.keyboard.press("v")
    page.wait_for_function("img => getComputedStyle(img).filter === 'none'", arg=image.element_handle())
    page.keyboard.press("v")
    page.wait_for_function("img => getComputedStyle(img).filter === 'blur(24px)'", arg=image.element_handle())

    page.click("nav >> text=Settings")
    page.check("input[value=light-blur]")
    page.click("#save-settings")
    page.click("nav >> text=Review queue")
    assert image.evaluate("img => getComputedStyle(img).filter") == "blur(8px) grayscale(1)"
    page.click("nav >> text=Settings")
    page.check("input[value=blur-grey]")
    page.click("#save-settings")
    expect(page.locator("#flash")).to_have_text("Saved.")
