"""The `altitude` action: one review item filed as an Altitude case (target, signal, case), resumably.

Queued as a follow-up of a new review item whose bank or rule `[actions.altitude]` names (`followups`), it runs
on the outbox like every outbound call: retried with backoff while Altitude or the author's PDS is down, failed
for good (with an ERROR line and a metric) when Altitude refuses the request. Each id Altitude returns is kept
before the next call, so a retry picks up where the last attempt stopped; only a crash between Altitude's answer
and our write can file a target twice.

What is sent: the image (fetched again through the pipeline's fetcher, with its size, time and address limits,
and checked against its CID), a title naming the author's DID, a description with the match and the post's URI,
the image's hash as a `USER_REPORT` signal, and `client_context` = {"review_item", "author", "subject"} as JSON.
Altitude's `creator` only holds an IP address or host name, which we do not have, so it is not sent.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Final

from labeler.pipeline.actions.altitude.api import AltitudeApi, AltitudeError
from labeler.pipeline.actions.altitude.store import HandoffStore
from labeler.pipeline.actions.config import AltitudeConfig
from labeler.pipeline.actions.model import Action, ActionSpec, Outcome, done, refused, skipped, unavailable
from labeler.pipeline.evidence import summary
from labeler.pipeline.fetcher import BlobFetcher, FetchError
from labeler.pipeline.jobs import ImageRef
from labeler.pipeline.review import ReviewError, ReviewItem, ReviewQueue

#: Our hashes as Altitude's signal types, in the order we prefer them.
_SIGNALS: Final = (("pdq", "HASH_PDQ"), ("md5", "HASH_MD5"))


def bank_of(evidence: dict[str, Any] | None) -> str | None:
    match = (evidence or {}).get("match")
    bank = match.get("bank") if isinstance(match, dict) else None
    return bank if isinstance(bank, str) else None


class AltitudeKind:
    name: ClassVar[str] = "altitude"
    local: ClassVar[bool] = False

    def __init__(
        self,
        config: AltitudeConfig,
        *,
        store: HandoffStore,
        reviews: ReviewQueue,
        fetcher: BlobFetcher,
        child_safety_banks: tuple[str, ...],
        max_attempts: int,
    ) -> None:
        self.config = config
        self.store = store
        self.reviews = reviews
        self.fetcher = fetcher
        self.child_safety = frozenset(child_safety_banks)
        self.max_attempts = max_attempts
        self.api = AltitudeApi(config.url, config.token, timeout=config.timeout, max_image_bytes=fetcher.max_bytes)

    async def aclose(self) -> None:
        await self.api.aclose()

    def routed(self, evidence: dict[str, Any] | None, rule: str | None) -> bool:
        """Whether a review item with this evidence goes to Altitude: its bank or rule is named, and it is not a
        child-safety bank's."""
        bank = bank_of(evidence)
        if bank is None or bank in self.child_safety:
            return False
        return bank in self.config.banks or (rule is not None and rule in self.config.rules)

    def followups(self, action: Action) -> list[ActionSpec]:
        """The hand-off a new review item calls for."""
        if action.kind != "review" or action.op != "apply" or action.state != "done":
            return []
        if not self.routed(action.evidence, action.rule):
            return []
        item_id = (action.result or {})["review_item"]
        return [
            ActionSpec(
                kind=self.name,
                subject_uri=action.subject_uri,
                subject_cid=action.subject_cid,
                params={"review_item": item_id},
                dedupe_key=f"altitude|{item_id}",
                actor=action.actor,
                decision=action.decision,
                job_id=action.job_id,
                rule=action.rule,
                evidence=action.evidence,
            )
        ]

    async def apply(self, action: Action) -> Outcome:
        item_id = int(action.params["review_item"])
        try:
            item = await self.reviews.get(item_id)
        except ReviewError:
            return skipped("gone", f"review item {item_id} no longer exists")
        if item.status != "pending":
            return skipped("decided", f"review item {item_id} was {item.status} before it was sent")
        if bank_of(item.evidence) in self.child_safety:  # the second guard: config refuses such routes at start
            return skipped("child-safety", f"review item {item_id} is a child-safety bank's match: never sent")
        try:
            target_id, case_id = await self._file(item)
        except FetchError as exc:
            return (unavailable if exc.retryable else refused)(f"fetch-{exc.reason}", exc.detail)
        except AltitudeError as exc:
            return (unavailable if exc.retryable else refused)(exc.code, exc.detail)
        except ValueError as exc:
            return refused("unsendable", str(exc))
        return done("filed", f"Altitude case {case_id}", review_item=item_id, target_id=target_id, case_id=case_id)

    async def reverse(self, action: Action, original: Action) -> Outcome:
        return skipped("not-reversible", "a case filed in Altitude stays there")

    async def _file(self, item: ReviewItem) -> tuple[str, str]:
        """Target, signal and case, each asked for only if an earlier attempt did not get it; the target and case
        ids."""
        have = await self.store.get(item.id)
        target_id = have.target_id if have else None
        if target_id is None:
            target_id = await self._target(item)
            await self.store.record(item.id, "target_id", target_id)
        signal_id = have.signal_id if have else None
        if signal_id is None:
            signal_type, value = _signal(item.evidence)
            author = f"atproto-hma-labeler, bank {bank_of(item.evidence)}"
            signal_id = await self.api.create_signal(signal_type, value, author=author)
            await self.store.record(item.id, "signal_id", signal_id)
        case_id = have.case_id if have else None
        if case_id is None:
            case_id = await self.api.create_case(target_id, signal_id)
            await self.store.record(item.id, "case_id", case_id)
        return target_id, case_id

    async def _target(self, item: ReviewItem) -> str:
        image = item.evidence.get("image")
        if not isinstance(image, dict) or image.get("media", "image") != "image":
            raise ValueError("Altitude reviews images; this item is not about one")
        ref = ImageRef(str(image.get("did")), str(image.get("blob_cid")), image.get("mime_type"), "image")
        blob = await self.fetcher.fetch(ref)
        context = {"review_item": item.id, "author": ref.did, "subject": item.subject_uri}
        return await self.api.create_target(
            blob.data,
            title=f"Image posted by {ref.did}",
            description=f"{summary(item.evidence)}; {item.subject_uri}",
            client_context=json.dumps(context, separators=(",", ":")),
        )


def _signal(evidence: dict[str, Any]) -> tuple[str, str]:
    for ours, theirs in _SIGNALS:
        value = evidence.get(ours)
        if isinstance(value, str) and value:
            return theirs, value
    raise ValueError("the item carries neither a PDQ nor an MD5 hash to file as Altitude's signal")
