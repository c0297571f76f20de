"""Doctor's identity checks: the DID document, its key and endpoint, reachability, the declaration and our values.

The DID is resolved afresh, as a consumer does after a failed signature check; the endpoint is reached exactly as
the document names it; the declaration is read from the PDS; the values we have in force are compared with what
clients accept.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import httpx
from atproto_core.did_doc import DidDocument

from labeler.identity.declare import DeclarationError, fetch_record, validate_record, value_problem
from labeler.identity.doctor.findings import Run
from labeler.identity.resolver import (
    LABEL_KEY_ID,
    LABELER_SERVICE_ID,
    LABELER_SERVICE_TYPE,
    DidRefused,
    IdentityError,
    verification_key,
)
from labeler.outbound import is_ip_literal


async def check_document(run: Run) -> DidDocument | None:
    did = run.facts.did
    try:
        url = run.resolver.document_url(did)
        document = await run.resolver.resolve(did, force_refresh=True)
    except DidRefused as exc:
        fix = _DOCUMENT_FIX
        if did.startswith("did:web:localhost"):
            fix = "set LABELER_ALLOW_INSECURE_DID_WEB=true (local development only: no consumer resolves it)"
        run.add("did-document", "fail", f"cannot resolve {did}: {exc}", fix)
        return None
    except IdentityError as exc:  # an outage or a bad answer, not a missing DID: `did create` would not help
        where = run.resolver.document_url(did)
        fix = f"check that {where} answers from here"
        if did.startswith("did:plc:"):
            fix = f"check that the PLC directory {run.resolver.plc_url} answers from here, or set LABELER_PLC_URL"
        run.add("did-document", "fail", f"cannot resolve {did} from {where}: {exc}", fix)
        return None
    if document is None:
        run.add("did-document", "fail", f"{did} does not exist at {url}", _DOCUMENT_FIX)
        return None
    run.label_keys[did] = verification_key(document, LABEL_KEY_ID)
    run.add("did-document", "ok", f"{did} resolves")
    return document


_DOCUMENT_FIX: Final = (
    "did:plc: `labeler did create` or `labeler did link-pds`; did:web: serve https://<host>/.well-known/did.json "
    "(`labeler serve` does) and check `did` / `public_url` in labeler.toml"
)


def no_label_key_fix(did: str, *, served_here: bool) -> str:
    """How to get a label key that `did`'s document names, when there is no active one. Also the fix
    `labeler serve`, `worker` and `ingest --workers` name when they refuse to start without a key
    (`labeler.cli._label_key`): a key made by `keys generate` alone is in no document but our own did:web's."""
    if served_here:
        return "`labeler keys generate` (or start `labeler serve`, which makes one): our did:web is served from it"
    if did.startswith("did:plc:"):
        return (
            "`labeler keys rotate` (a new key, published with the rotation key or --via-pds, then activated); or "
            "`labeler keys generate`, then `labeler did update` / `labeler did link-pds`; or `labeler keys import "
            "FILE` with the key the document already names"
        )
    return (
        f"`labeler keys import FILE` with the key {did}'s document names; or `labeler keys generate`, then put its "
        "Multikey (`labeler keys show`) in that document as #atproto_label"
    )


def check_label_key(run: Run, document: DidDocument) -> None:
    published, active = verification_key(document, LABEL_KEY_ID), run.facts.active_did_key
    if active is None:
        fix = no_label_key_fix(run.facts.did, served_here=run.facts.serves_did_web)
        run.add("label-key", "fail", "no active label key", fix)
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


def check_endpoint(run: Run, document: DidDocument) -> str | None:
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
    if is_ip_literal(host):
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


async def check_reachable(run: Run, endpoint: str) -> bool:
    try:
        response = await run.http.get(f"{endpoint}/xrpc/_health")
    except httpx.HTTPError as exc:
        return run.add(
            "endpoint-reachable", "fail", f"{endpoint} is unreachable: {type(exc).__name__}",
            "start the labeler (`labeler serve`) and make the public URL route to it",
        )  # fmt: skip
    return run.add("endpoint-reachable", "ok", f"{endpoint} answers (HTTP {response.status_code})")


async def check_declaration(run: Run, document: DidDocument) -> None:
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
    missing = [v for v in run.facts.active_values if v not in declared]
    if missing:
        run.add(
            "declared-values", "fail", f"in force but not declared (clients ignore them): {', '.join(missing)}",
            "add them to [declaration] in labeler.toml, then `labeler declare`",
        )  # fmt: skip
    else:
        run.add("declared-values", "ok", f"all {len(run.facts.active_values)} values in force are declared")


def check_value_syntax(run: Run) -> None:
    problems = [p for p in map(value_problem, run.facts.active_values) if p]
    if problems:
        run.add(
            "value-syntax", "fail", "; ".join(problems),
            "negate those labels (`labeler label negate`) and re-label with a ^[a-z-]+$ value",
        )  # fmt: skip
    else:
        run.add("value-syntax", "ok", "every value in force is shown by clients")


def check_own_content(run: Run) -> None:
    count = run.facts.own_content_labels
    if count:
        run.add(
            "own-content", "warn", f"{count} labels are on the labeler's own account or records; clients ignore them",
            "label content from the account being moderated, not the labeler's",
        )  # fmt: skip
    else:
        run.add("own-content", "ok", "no labels on our own content")
