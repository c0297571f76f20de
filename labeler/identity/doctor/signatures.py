"""Doctor's signature checks: labels fetched from our public endpoint, verified as a consumer verifies them.

A consumer checks each label against the `#atproto_label` key of that label's own `src` DID document, whatever its
age. So these checks read what the endpoint serves (re-signed on the way out, if it does that), for every `src` the
database holds, in an oldest, a random and a newest window each, and the newest labels of the stream.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from labeler.identity.doctor.findings import Run, dicts_in
from labeler.identity.resolver import IdentityError
from labeler.protocol.frames import decode_frame
from labeler.protocol.label import verify_received
from labeler.store.label_samples import SourceSample

#: Labels per sample window (queryLabels page size) and the newest labels replayed from the stream.
WINDOW: Final = 25

_QUERY_ROUTE_FIX: Final = "the endpoint must route /xrpc/com.atproto.label.queryLabels to the labeler"
_SIGNATURE_FIX: Final = (
    "every label must be signed by a key its own src's DID document names as #atproto_label: publish the active "
    "key (see label-key), then `labeler keys resign`"
)
_STREAM_FIX: Final = (
    "the proxy in front of the labeler must pass WebSocket upgrades for /xrpc/com.atproto.label.subscribeLabels"
)


class _NoLabels(Exception):
    """The endpoint did not answer queryLabels with a list of labels."""


async def check_query_labels(run: Run, endpoint: str) -> None:
    try:
        if not run.facts.sources:
            await _query(run, endpoint, {"uriPatterns": "*", "limit": 1})
            run.add("query-labels", "ok", "queryLabels answers; no labels yet")
            return
        checked = [(sample.src, await _sample_labels(run, endpoint, sample)) for sample in run.facts.sources]
    except _NoLabels:
        run.add("query-labels", "fail", f"queryLabels at {endpoint} did not answer with labels", _QUERY_ROUTE_FIX)
        return
    problems: list[str] = []
    for src, labels in checked:
        if not labels:
            problems.append(f"the endpoint serves no labels of {src} though our database holds them")
        else:
            problems += await _signature_problems(run, src, labels, "sampled labels (oldest, random, newest)")
    total = sum(len(labels) for _, labels in checked)
    if problems:
        run.add("query-labels", "fail", "; ".join(problems), _SIGNATURE_FIX)
    else:
        sources = f"{len(checked)} sources" if len(checked) > 1 else checked[0][0]
        run.add("query-labels", "ok", f"queryLabels answers; {total} sampled labels of {sources} verify")


async def _sample_labels(run: Run, endpoint: str, sample: SourceSample) -> list[dict[str, Any]]:
    """The labels of `sample.src` in each of its windows, each label once."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for cursor in sample.cursors:
        params = {"uriPatterns": "*", "sources": sample.src, "limit": WINDOW, "cursor": cursor}
        for label in await _query(run, endpoint, params):
            if isinstance(label, dict) and label.get("src") == sample.src:
                seen.setdefault((label.get("uri"), label.get("cid"), label.get("val")), label)
    return list(seen.values())


async def _query(run: Run, endpoint: str, params: dict[str, Any]) -> list[Any]:
    try:
        response = await run.http.get(f"{endpoint}/xrpc/com.atproto.label.queryLabels", params=params)
        labels = response.json()["labels"] if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        labels = None
    if not isinstance(labels, list):
        raise _NoLabels
    return labels


async def _signature_problems(run: Run, src: str, labels: list[dict[str, Any]], what: str) -> list[str]:
    key = await run.label_key(src)
    if isinstance(key, IdentityError):
        return [f"{len(labels)} {what} of {src} cannot be verified: {key}"]
    if key is None:
        return [f"{len(labels)} {what} of {src} cannot be verified: its DID document has no #atproto_label key"]
    bad = sum(1 for label in labels if not verify_received(label, key))
    return [f"{bad} of {len(labels)} {what} of {src} do not verify against its #atproto_label"] if bad else []


async def check_subscribe_labels(run: Run, endpoint: str) -> None:
    """Replay the newest labels from `stream_from` up to the head and verify each against its own `src`."""
    facts = run.facts
    url = "ws" + endpoint.removeprefix("http") + f"/xrpc/com.atproto.label.subscribeLabels?cursor={facts.stream_from}"
    try:
        async with connect(url, open_timeout=run.ws_wait + 3, close_timeout=1, max_size=2**22) as ws:
            frames = await _read_to_head(ws, facts.stream_from, facts.head, run.ws_wait)
    except InvalidStatus as exc:
        run.add("subscribe-labels", "fail", f"the WebSocket handshake got HTTP {exc.response.status_code}", _STREAM_FIX)
        return
    except ConnectionClosed as exc:
        run.add("subscribe-labels", "fail", f"the stream closed at once ({exc})", _STREAM_FIX)
        return
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        run.add("subscribe-labels", "fail", f"no WebSocket handshake: {type(exc).__name__} {exc}", _STREAM_FIX)
        return
    except ValueError:
        run.add("subscribe-labels", "fail", "the stream sent a frame that is not two DAG-CBOR objects", _STREAM_FIX)
        return
    error = next((body for header, body in frames if header.get("op") == -1), None)
    if error is not None:
        answer = f"{error.get('error')}: {error.get('message', '')}".rstrip()
        run.add(
            "subscribe-labels", "fail", f"the stream answered {answer}",
            "a FutureCursor means the endpoint serves another (older) database than this one",
        )  # fmt: skip
        return
    labels = [label for _, body in frames for label in dicts_in(body.get("labels"))]
    last = max((body.get("seq", 0) for _, body in frames), default=facts.stream_from)
    if last < facts.head:
        run.add(
            "subscribe-labels", "fail",
            f"the stream replayed up to seq {last} from cursor {facts.stream_from} in {run.ws_wait:g} s; our "
            f"database is at {facts.head}", f"{_STREAM_FIX}, and not buffer it",
        )  # fmt: skip
        return
    problems: list[str] = []
    for src in dict.fromkeys(label.get("src") for label in labels):
        mine = [label for label in labels if label.get("src") == src]
        problems += await _signature_problems(run, str(src), mine, "newest labels on the stream")
    if problems:
        run.add("subscribe-labels", "fail", "; ".join(problems), _SIGNATURE_FIX)
    elif labels:
        run.add("subscribe-labels", "ok", f"subscribeLabels replays the newest {len(labels)} labels; they verify")
    else:
        run.add("subscribe-labels", "ok", f"subscribeLabels is open at cursor {facts.stream_from}; no error")


async def _read_to_head(
    ws: ClientConnection, cursor: int, head: int, wait: float
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Frames until one reaches `head`, an error frame, or `wait` seconds pass without a frame."""
    frames: list[tuple[dict[str, Any], dict[str, Any]]] = []
    seq = cursor
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), wait)
        except TimeoutError:
            return frames
        header, body = decode_frame(raw if isinstance(raw, bytes) else raw.encode())
        frames.append((header, body))
        seq = body.get("seq", seq) if isinstance(body.get("seq"), int) else seq
        if header.get("op") == -1 or seq >= head > cursor:
            return frames
