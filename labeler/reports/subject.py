"""The subject union shared by createReport and emitEvent: an account (`repoRef`) or a record (`strongRef`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from labeler.protocol import syntax
from labeler.protocol.errors import InvalidRequest

REPO_REF: Final = "com.atproto.admin.defs#repoRef"
STRONG_REF: Final = "com.atproto.repo.strongRef"

SubjectType = Literal["account", "record"]


@dataclass(frozen=True, slots=True)
class Subject:
    """What a report or moderation event is about. `uri` is the DID for an account, the at:// URI for a record."""

    type: SubjectType
    uri: str
    did: str
    cid: str | None = None

    @property
    def collection(self) -> str | None:
        return self.uri.removeprefix("at://").split("/")[1] if self.type == "record" else None

    def to_ref(self) -> dict[str, Any]:
        """The lexicon union member for this subject (as createReport and the Ozone views echo it)."""
        if self.type == "account":
            return {"$type": REPO_REF, "did": self.did}
        return {"$type": STRONG_REF, "uri": self.uri, "cid": self.cid}

    @classmethod
    def from_row(cls, subject_type: str, uri: str, did: str, cid: str | None) -> Subject:
        return cls("record" if subject_type == "record" else "account", uri, did, cid)


def parse_subject_ref(subject: Any) -> Subject:
    """Parse the subject union; `InvalidRequest` unless it is a repoRef with a DID or a strongRef to a record.

    A strongRef must name one record by DID (`at://<did>/<collection>/<rkey>`) with its CID: a handle can move
    to another account, and a report or label on "whatever this handle is now" would be ambiguous.
    """
    if not isinstance(subject, dict):
        raise InvalidRequest("subject must be an object")
    kind = subject.get("$type")
    try:
        if kind == REPO_REF:
            did = subject.get("did")
            if not isinstance(did, str):
                raise InvalidRequest("subject.did is required")
            return Subject("account", syntax.check_did(did), did)
        if kind == STRONG_REF:
            uri, cid = subject.get("uri"), subject.get("cid")
            if not isinstance(uri, str) or not isinstance(cid, str):
                raise InvalidRequest("subject.uri and subject.cid are required")
            syntax.check_at_uri(uri)
            parts = uri.removeprefix("at://").split("/")
            if len(parts) != 3 or not parts[0].startswith("did:"):
                raise InvalidRequest("subject.uri must be a record URI at://<did>/<collection>/<rkey>")
            return Subject("record", uri, parts[0], syntax.check_cid(cid))
    except ValueError as exc:
        raise InvalidRequest(f"subject: {exc}") from None
    raise InvalidRequest(f"unsupported subject type {str(kind)[:100]!r}: expected {REPO_REF} or {STRONG_REF}")


def parse_subject_param(value: str) -> str:
    """A `subject` query parameter (a DID or an at:// URI) checked; `InvalidRequest` otherwise."""
    try:
        return syntax.check_subject_uri(value)
    except ValueError as exc:
        raise InvalidRequest(f"subject: {exc}") from None
