"""`exchange-feedback`: a moderator's verdict on a match against a hash exchange's entry, sent back to that exchange
(NCMEC's upvote or downvote, StopNCII's feedback, ThreatExchange's opinion) by its type's `send_feedback`.

Off unless the operator switches it on per exchange (`labeler exchange add … --feedback`, `labeler exchange
feedback NAME on|off`: the `feedback` key of the exchange's options). `decisions` asks `plan` when a person
confirms or rejects a review item: the match's bank entry names the exchange that added it (note
`exchange:<name>`) and the entry's id there (its external id), and if that exchange takes feedback and has it on,
one row is queued per decision and verdict (its dedupe key), so a decision is sent once however often it is
submitted. Reversing a confirmed decision later (its label negated) sends the opposite verdict, as a
reversal row, once the confirmation was attempted (a confirmation never attempted is cancelled instead); a
rejection's reversal sends nothing (nothing about the entry changed).

Each attempt reads the exchange's options and credentials as they are then: an exchange switched off since ends
`skipped`, one removed `failed`. An outage, a 429 or a 5xx is retried with backoff (the outbox's); refused
credentials or a refusal of the call itself (a 4xx) end `failed` at once, with the exchange's words, in
`labeler actions list --state failed` and `labeler_actions_total{kind="exchange-feedback",state="failed"}`;
`labeler actions retry` sends them again once fixed. As with a report, an attempt cut short in the instant after
the exchange took it is sent again (NCMEC keeps one vote per member and fingerprint, so there it changes nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Final

import httpx

from labeler.exchanges.credentials import read_credentials
from labeler.exchanges.errors import ExchangeAuthError, ExchangeError, ExchangeUnavailable
from labeler.exchanges.fetch import http_client
from labeler.exchanges.store import ExchangeStore, exchange_of_note
from labeler.exchanges.types import FeedbackCall, exchange_type
from labeler.pipeline.actions.model import Action, ActionSpec, Outcome, done, refused, skipped, unavailable
from labeler.pipeline.signals import PDQ

NAME: Final = "exchange-feedback"


class ExchangeFeedbackKind:
    name: ClassVar[str] = NAME
    local: ClassVar[bool] = False

    def __init__(
        self, store: ExchangeStore, *, keys_dir: Path, max_attempts: int, timeout: float, allow_private: bool = False
    ) -> None:
        self.store = store
        self.keys_dir = keys_dir
        self.max_attempts = max_attempts
        self._timeout = timeout
        self._allow_private = allow_private
        self._http: httpx.AsyncClient | None = None  # made on first use: most processes never send any

    async def plan(
        self,
        evidence: dict[str, Any],
        *,
        confirmed: bool,
        key: str,
        actor: str,
        note: str | None,
        subject_uri: str,
        subject_cid: str | None,
    ) -> list[ActionSpec]:
        """The feedback row for a person's verdict on the match in `evidence` (decision `key`), or none when the
        matched entry came from no exchange, or one without feedback switched on, or one that dropped the entry."""
        match = evidence.get("match")
        if not isinstance(match, dict) or not isinstance(match.get("external_id"), str):
            return []
        name, remote_id = exchange_of_note(match.get("note")), str(match["external_id"])
        if name is None:
            return []
        try:
            exchange = await self.store.get(name)
        except ExchangeError:
            return []
        value = await self.store.entry_value(name, remote_id) if exchange.feedback else None
        if value is None:
            return []
        verdict = "confirmed" if confirmed else "rejected"
        job_id, rule = evidence.get("job_id"), evidence.get("rule")
        params = {
            "exchange": name, "remote_id": remote_id, "signal_type": str(match.get("signal_type") or PDQ),
            "value": value, "confirmed": confirmed, "note": note,
        }  # fmt: skip
        return [
            ActionSpec(
                kind=NAME,
                subject_uri=subject_uri,
                subject_cid=subject_cid,
                params=params,
                dedupe_key=f"{key}|{NAME}|{verdict}|{name}:{remote_id}",
                actor=actor,
                decision=key,
                job_id=job_id if isinstance(job_id, int) else None,
                rule=rule.get("name") if isinstance(rule, dict) else None,
                evidence={**evidence, "action": NAME},
            )
        ]

    async def apply(self, action: Action) -> Outcome:
        return await self._send(action.params, confirmed=bool(action.params["confirmed"]), note=action.params["note"])

    async def reverse(self, action: Action, original: Action) -> Outcome:
        if not original.params["confirmed"]:
            return skipped("not-reversible", "a rejection sent to the exchange stays; nothing more to send")
        if original.state == "skipped":
            return skipped("nothing-sent", "the confirmation was never sent")
        # Sent, or maybe sent (an attempt that timed out may have reached it): the decision now says "no match".
        return await self._send(original.params, confirmed=False, note=action.params.get("reason"))

    async def _send(self, params: dict[str, Any], *, confirmed: bool, note: str | None) -> Outcome:
        name, remote_id = str(params["exchange"]), str(params["remote_id"])
        try:
            exchange = await self.store.get(name)
        except ExchangeError:
            return refused("no-exchange", f"exchange {name!r} was removed")
        if not exchange.feedback:
            return skipped("feedback-off", f"feedback to exchange {name} is switched off")
        verdict = "confirmed" if confirmed else "rejected"
        try:
            kind = exchange_type(exchange.type)
            call = FeedbackCall(
                exchange.options, read_credentials(self.keys_dir, name), self._client(), remote_id,
                str(params["signal_type"]), str(params["value"]), confirmed, note,
            )  # fmt: skip
            await kind.send_feedback(call)
        except ExchangeAuthError as exc:
            return refused("exchange-auth", f"{exc}; then `labeler actions retry`")
        except ExchangeUnavailable as exc:
            return unavailable("exchange-unavailable", str(exc))
        except ExchangeError as exc:
            return refused("exchange-refused", str(exc))
        return done("sent", f"{verdict} sent to exchange {name} for entry {remote_id}", verdict=verdict, exchange=name)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = http_client(allow_private=self._allow_private, timeout=self._timeout)
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
