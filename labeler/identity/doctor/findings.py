"""What every doctor check shares: its finding, our local facts, and the run that collects findings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import httpx

from labeler.identity.resolver import LABEL_KEY_ID, DidResolver, IdentityError, verification_key
from labeler.store.label_samples import SourceSample

Status = Literal["ok", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    message: str
    fix: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def dicts_in(value: Any) -> list[dict[str, Any]]:
    """The objects in a JSON (or CBOR) list found in an answer; nothing when it is not a list."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def healthy(findings: list[Finding]) -> bool:
    return not any(f.status == "fail" for f in findings)


@dataclass(frozen=True)
class LocalFacts:
    """What we know without the network: our DID and URL, the active key, and what we serve.

    `sources` is every `src` the labels table serves, with where to sample it; `stream_from` is a subscribeLabels
    cursor that replays the newest labels; `active_values` are our DID's values still in force (not negated, not
    expired): only those need declaring. `shown_label` (uri, val) is our newest label in force on a post or an
    account, the subject `--appview` asks about.
    """

    did: str
    public_url: str
    active_did_key: str | None
    serves_did_web: bool  # our own did:web, whose document `labeler serve` makes from the active key
    head: int = 0
    stream_from: int = 0
    sources: list[SourceSample] = field(default_factory=list)
    active_values: list[str] = field(default_factory=list)
    own_content_labels: int = 0
    shown_label: tuple[str, str] | None = None


@dataclass
class Run:
    facts: LocalFacts
    resolver: DidResolver
    http: httpx.AsyncClient
    pds_url: str | None
    ws_wait: float
    findings: list[Finding] = field(default_factory=list)
    #: Each `src`'s #atproto_label did:key (None: no usable key), or why its document could not be read.
    label_keys: dict[str, str | IdentityError | None] = field(default_factory=dict)

    def add(self, check: str, status: Status, message: str, fix: str | None = None) -> bool:
        self.findings.append(Finding(check, status, message, fix))
        return status in ("ok", "warn")

    def skip(self, why: str, *checks: str) -> None:
        for check in checks:
            self.add(check, "skip", why)

    async def label_key(self, src: str) -> str | IdentityError | None:
        """The key a consumer checks `src`'s labels against: its own DID document's, resolved afresh once."""
        if src not in self.label_keys:
            try:
                document = await self.resolver.ensure_resolve(src, force_refresh=True)
            except IdentityError as exc:
                self.label_keys[src] = exc
            else:
                self.label_keys[src] = verification_key(document, LABEL_KEY_ID)
        return self.label_keys[src]
