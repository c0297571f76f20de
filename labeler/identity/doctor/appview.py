"""`labeler doctor --appview`: does the AppView apply our labels? The "labels don't show" question, end to end.

The other checks look at us; this one asks the AppView that the Bluesky app talks to, as the app asks it: for one
subject we have labelled (our newest label in force on a post or an account), with `atproto-accept-labelers: <our
DID>`. The AppView names the labelers it applied in `atproto-content-labelers`; we are missing from it when it does
not know our DID as a labeler (no account, no declaration, or not indexed yet). Applied but without our label
means its ingester has not taken the label from our `subscribeLabels`.
"""

from __future__ import annotations

from typing import Any, Final

import httpx

from labeler.identity.doctor.findings import Finding, dicts_in
from labeler.outbound import RefusedAddress

PUBLIC_APPVIEW: Final = "https://api.bsky.app"
CHECK: Final = "appview"

_NOT_APPLIED_FIX: Final = (
    "an AppView applies a labeler whose DID is an account with a declaration: `labeler did link-pds`, then "
    "`labeler declare`; Bluesky's AppView may take some minutes to index a new declaration"
)
_NOT_INGESTED_FIX: Final = (
    "the AppView takes labels from our #atproto_labeler endpoint's subscribeLabels: see subscribe-labels and "
    "query-labels above; a label whose signature does not verify is dropped"
)


async def check_appview(http: httpx.AsyncClient, appview: str, did: str, shown: tuple[str, str] | None) -> Finding:
    """Ask `appview` about the subject of `shown` (uri, val) as a client that subscribes to our labels."""
    appview = appview.rstrip("/")
    if shown is None:
        return Finding(CHECK, "skip", "no label of ours in force on a post or an account to ask the AppView about")
    uri, val = shown
    method, params = _lookup(uri)
    try:
        response = await http.get(f"{appview}/xrpc/{method}", params=params, headers={"atproto-accept-labelers": did})
    except RefusedAddress as exc:
        return Finding(
            CHECK, "fail", f"not asking {appview}: {exc}",
            "only for an AppView on a private network: LABELER_ALLOW_PRIVATE_FETCH=true",
        )  # fmt: skip
    except httpx.HTTPError as exc:
        return Finding(CHECK, "fail", f"cannot ask {appview}: {type(exc).__name__} {exc}".rstrip())
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        error = (body.get("message") or body.get("error")) if isinstance(body, dict) else None
        return Finding(CHECK, "fail", f"{appview} answered {method} for {uri} with HTTP {response.status_code}"
                       + (f": {error}" if error else ""))  # fmt: skip
    applied = _labelers(response.headers.get("atproto-content-labelers", ""))
    if did not in applied:
        named = ", ".join(applied) or "none"
        return Finding(
            CHECK, "fail", f"{appview} does not apply our labels: atproto-content-labelers names {named}",
            _NOT_APPLIED_FIX,
        )  # fmt: skip
    subject = _subject(method, body)
    if subject is None:
        return Finding(CHECK, "warn", f"{appview} applies {did} but does not know {uri} (deleted, or not indexed)")
    ours = sorted({str(label.get("val")) for label in dicts_in(subject.get("labels")) if label.get("src") == did})
    if val not in ours:
        showing = f" (it shows {', '.join(ours)})" if ours else ""
        return Finding(
            CHECK, "fail", f"{appview} applies {did} but shows no {val!r} of ours on {uri}{showing}", _NOT_INGESTED_FIX
        )
    return Finding(CHECK, "ok", f"{appview} applies {did} and shows {', '.join(ours)} on {uri}")


def _lookup(uri: str) -> tuple[str, dict[str, str]]:
    if uri.startswith("did:"):
        return "app.bsky.actor.getProfile", {"actor": uri}
    return "app.bsky.feed.getPosts", {"uris": uri}


def _labelers(header: str) -> list[str]:
    """The DIDs of an `atproto-content-labelers` value (`did:plc:a;redact, did:plc:b`)."""
    return [item.split(";", 1)[0].strip() for item in header.split(",") if item.strip()]


def _subject(method: str, body: dict[str, Any]) -> dict[str, Any] | None:
    if method == "app.bsky.actor.getProfile":
        return body
    posts = dicts_in(body.get("posts"))
    return posts[0] if posts else None
