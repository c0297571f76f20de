"""`labeler doctor`: what the network finds when it looks for this labeler, and why labels would not show.

"Labels are stored but don't show" is the most common labeler complaint (protocol.md §8 item 1). Each check
answers one cause with ok / warn / fail and a fix: the DID is resolved afresh, as a consumer does after a failed
signature check; the endpoint is reached exactly as the document names it; the declaration is read from the PDS;
the values we have emitted are compared with what clients accept. `LocalFacts` are read from our own database
and keyring first, so the checks themselves only talk to the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx
from atproto_core.did_doc import DidDocument
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from labeler.identity.declare import DeclarationError, fetch_record, validate_record, value_problem
from labeler.identity.resolver import (
    LABEL_KEY_ID,
    LABELER_SERVICE_ID,
    LABELER_SERVICE_TYPE,
    DidResolver,
    IdentityError,
    verification_key,
)
from labeler.protocol.frames import decode_frame
from labeler.protocol.label import verify_received

Status = Literal["ok", "warn", "fail", "skip"]
DEFAULT_WS_WAIT: Final = 2.0
_SAMPLE_LABELS: Final = 25


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    message: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LocalFacts:
    """What we know without the network: our DID and URL, the active key, and what we have emitted."""

    did: str
    public_url: str
    active_did_key: str | None
    head: int = 0
    emitted_values: list[str] = field(default_factory=list)
    own_content_labels: int = 0


@dataclass
class _Run:
    facts: LocalFacts
    resolver: DidResolver
    http: httpx.AsyncClient
    pds_url: str | None
    ws_wait: float
    findings: list[Finding] = field(default_factory=list)

    def add(self, check: str, status: Status, message: str, fix: str | None = None) -> bool:
        self.findings.append(Finding(check, status, message, fix))
        return status in ("ok", "warn")

    def skip(self, why: str, *checks: str) -> None:
        for check in checks:
            self.add(check, "skip", why)


async def diagnose(
    facts: LocalFacts,
    resolver: DidResolver,
    http: httpx.AsyncClient,
    *,
    pds_url: str | None = None,
    ws_wait: float = DEFAULT_WS_WAIT,
) -> list[Finding]:
    """Run every check; a check whose input is missing (no document, endpoint down) is reported as skipped."""
    run = _Run(facts, resolver, http, pds_url, ws_wait)
    endpoint_checks = ("endpoint-reachable", "query-labels", "subscribe-labels")
    document = await _check_document(run)
    if document is None:
        run.skip("no DID document", "label-key", "labeler-endpoint", *endpoint_checks, "declaration", "declared-values")
    else:
        _check_label_key(run, document)
        endpoint = _check_endpoint(run, document)
        if endpoint is None:
            run.skip("no usable endpoint", *endpoint_checks)
        elif await _check_reachable(run, endpoint):
            await _check_query_labels(run, endpoint, verification_key(document, LABEL_KEY_ID))
            await _check_subscribe_labels(run, endpoint)
        else:
            run.skip("endpoint unreachable", *endpoint_checks[1:])
        await _check_declaration(run, document)
    _check_value_syntax(run)
    _check_own_content(run)
    return run.findings


def healthy(findings: list[Finding]) -> bool:
    return not any(f.status == "fail" for f in findings)


async def _check_document(run: _Run) -> DidDocument | None:
    did = run.facts.did
    try:
        document = await run.resolver.resolve(did, force_refresh=True)
    except IdentityError as exc:
        run.add("did-document", "fail", f"cannot resolve {did}: {exc}", _DOCUMENT_FIX)
        return None
    if document is None:
        run.add("did-document", "fail", f"{did} does not exist", _DOCUMENT_FIX)
        return None
    run.add("did-document", "ok", f"{did} resolves")
    return document


_DOCUMENT_FIX: Final = (
    "did:plc: `labeler did create` or `labeler did link-pds`; did:web: serve https://<host>/.well-known/did.json "
    "(`labeler serve` does) and check `did` / `public_url` in labeler.toml"
)


def _check_label_key(run: _Run, document: DidDocument) -> None:
    published, active = verification_key(document, LABEL_KEY_ID), run.facts.active_did_key
    if active is None:
        run.add("label-key", "fail", "no active label key", "`labeler keys generate`")
    elif published is None:
        run.add(
            "label-key", "fail", "the DID document has no usable #atproto_label key; every label fails verification",
            "`labeler did update` (rotation key) or `labeler did link-pds` (through the PDS)",
        )  # fmt: skip
    elif published != active:
        run.add(
            "label-key", "fail", f"#atproto_label is {published} but the active key is {active}; "
            "consumers reject every label we sign",
            "publish the active key (`labeler did update` / `labeler did link-pds`), or rotate properly with "
            "`labeler keys rotate`",
        )  # fmt: skip
    else:
        run.add("label-key", "ok", f"#atproto_label is the active key {active}")


def _check_endpoint(run: _Run, document: DidDocument) -> str | None:
    endpoint = document.get_service_endpoint(LABELER_SERVICE_ID, LABELER_SERVICE_TYPE)
    fix = "publish `public_url` as the #atproto_labeler endpoint (`labeler did update` / `labeler did link-pds`)"
    if not endpoint:
        run.add("labeler-endpoint", "fail", "the DID document has no #atproto_labeler service", fix)
        return None
    url = urlsplit(endpoint)
    host = url.hostname or ""
    if url.scheme not in ("http", "https") or not host:
        run.add("labeler-endpoint", "fail", f"{endpoint!r} is not an http(s) URL", fix)
        return None
    if _is_ip(host):
        run.add(
            "labeler-endpoint", "fail",
            f"{endpoint} uses an IP address; PDSes refuse to proxy to it (\"Invalid hostname\")",
            "serve under a host name (e.g. https://labeler.example.com) and publish that",
        )  # fmt: skip
        return endpoint  # still worth probing: the rest of the report stays useful
    if url.path not in ("", "/") or url.query:
        run.add(
            "labeler-endpoint", "fail", f"{endpoint} has a path; consumers append /xrpc/... to scheme://host[:port]",
            fix,
        )  # fmt: skip
        return None
    if endpoint.rstrip("/") != run.facts.public_url:
        run.add("labeler-endpoint", "warn", f"{endpoint} differs from public_url {run.facts.public_url}", fix)
    elif url.scheme != "https" and host != "localhost":
        run.add("labeler-endpoint", "warn", f"{endpoint} is not HTTPS", "serve HTTPS on port 443")
    else:
        run.add("labeler-endpoint", "ok", f"#atproto_labeler is {endpoint}")
    return endpoint.rstrip("/")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def _check_reachable(run: _Run, endpoint: str) -> bool:
    try:
        response = await run.http.get(f"{endpoint}/xrpc/_health")
    except httpx.HTTPError as exc:
        return run.add(
            "endpoint-reachable", "fail", f"{endpoint} is unreachable: {type(exc).__name__}",
            "start the labeler (`labeler serve`) and make the public URL route to it",
        )  # fmt: skip
    return run.add("endpoint-reachable", "ok", f"{endpoint} answers (HTTP {response.status_code})")


async def _check_query_labels(run: _Run, endpoint: str, published_key: str | None) -> None:
    fix = "the endpoint must route /xrpc/com.atproto.label.queryLabels to the labeler"
    try:
        response = await run.http.get(
            f"{endpoint}/xrpc/com.atproto.label.queryLabels", params={"uriPatterns": "*", "limit": _SAMPLE_LABELS}
        )
        labels = response.json()["labels"] if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        labels = None
    if not isinstance(labels, list):
        run.add("query-labels", "fail", f"queryLabels at {endpoint} did not answer with labels", fix)
        return
    ours = [label for label in labels if isinstance(label, dict) and label.get("src") == run.facts.did]
    bad = [label for label in ours if published_key is None or not verify_received(label, published_key)]
    if bad:
        run.add(
            "query-labels", "fail", f"{len(bad)} of {len(ours)} sampled labels do not verify against #atproto_label",
            "make the DID document name the active key (see label-key), then `labeler keys resign`",
        )  # fmt: skip
    else:
        run.add("query-labels", "ok", f"queryLabels answers; {len(ours)} sampled labels verify")


async def _check_subscribe_labels(run: _Run, endpoint: str) -> None:
    url = "ws" + endpoint.removeprefix("http") + f"/xrpc/com.atproto.label.subscribeLabels?cursor={run.facts.head}"
    fix = "the proxy in front of the labeler must pass WebSocket upgrades for /xrpc/com.atproto.label.subscribeLabels"
    try:
        async with connect(url, open_timeout=run.ws_wait + 3, close_timeout=1) as ws:
            try:
                frame = await asyncio.wait_for(ws.recv(), run.ws_wait)
            except TimeoutError:
                run.add("subscribe-labels", "ok", f"subscribeLabels is open at cursor {run.facts.head}; no error")
                return
    except InvalidStatus as exc:
        run.add("subscribe-labels", "fail", f"the WebSocket handshake got HTTP {exc.response.status_code}", fix)
        return
    except ConnectionClosed as exc:
        run.add("subscribe-labels", "fail", f"the stream closed at once ({exc})", fix)
        return
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        run.add("subscribe-labels", "fail", f"no WebSocket handshake: {type(exc).__name__} {exc}", fix)
        return
    try:
        header, body = decode_frame(frame if isinstance(frame, bytes) else frame.encode())
    except ValueError:
        run.add("subscribe-labels", "fail", "the stream sent a frame that is not two DAG-CBOR objects", fix)
        return
    if header.get("op") == -1:
        run.add(
            "subscribe-labels", "fail", f"the stream answered {body.get('error')}: {body.get('message', '')}".rstrip(),
            "a FutureCursor means the endpoint serves another (older) database than this one",
        )  # fmt: skip
    else:
        run.add("subscribe-labels", "ok", f"subscribeLabels streams from cursor {run.facts.head}")


async def _check_declaration(run: _Run, document: DidDocument) -> None:
    pds = run.pds_url or document.get_pds_endpoint()
    if not pds:
        run.add(
            "declaration", "fail", "the DID has no PDS (#atproto_pds), so there is no repo for the declaration record",
            "use an account's DID (`labeler did link-pds`); apps only list labelers that have a declaration",
        )  # fmt: skip
        run.skip("no declaration", "declared-values")
        return
    try:
        record = await fetch_record(run.http, pds, run.facts.did)
    except (httpx.HTTPError, ValueError) as exc:
        run.add("declaration", "fail", f"cannot read the declaration from {pds}: {type(exc).__name__}")
        run.skip("no declaration", "declared-values")
        return
    if record is None:
        message = f"no app.bsky.labeler.service/self in {run.facts.did}'s repo"
        run.add("declaration", "fail", message, "`labeler declare`")
        run.skip("no declaration", "declared-values")
        return
    try:
        validate_record(record)
    except DeclarationError as exc:
        run.add("declaration", "fail", f"the published declaration is invalid: {exc}", "`labeler declare`")
    else:
        run.add("declaration", "ok", f"declaration published at {pds}")
    declared = set(record.get("policies", {}).get("labelValues") or ())
    missing = [v for v in run.facts.emitted_values if v not in declared]
    if missing:
        run.add(
            "declared-values", "fail", f"emitted but not declared (clients ignore them): {', '.join(missing)}",
            "add them to [declaration] in labeler.toml, then `labeler declare`",
        )  # fmt: skip
    else:
        run.add("declared-values", "ok", f"all {len(run.facts.emitted_values)} emitted values are declared")


def _check_value_syntax(run: _Run) -> None:
    problems = [p for p in map(value_problem, run.facts.emitted_values) if p]
    if problems:
        run.add(
            "value-syntax", "fail", "; ".join(problems),
            "negate those labels (`labeler label negate`) and re-label with a ^[a-z-]+$ value",
        )  # fmt: skip
    else:
        run.add("value-syntax", "ok", "every emitted value is shown by clients")


def _check_own_content(run: _Run) -> None:
    count = run.facts.own_content_labels
    if count:
        run.add(
            "own-content", "warn", f"{count} labels are on the labeler's own account or records; clients ignore them",
            "label content from the account being moderated, not the labeler's",
        )  # fmt: skip
    else:
        run.add("own-content", "ok", "no labels on our own content")
