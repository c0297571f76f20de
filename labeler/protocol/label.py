"""The label object: validation, canonical signing bytes, signing and verification (protocol.md §1).

A label is signed over the DAG-CBOR of exactly the fields it is served with: `ver` always, `neg` only when true,
no `$type`, and `cts`/`exp` as the very strings that were signed. Verification of a label received from elsewhere
uses the fields as received (`verify_received`), never a normalised copy.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import cbor2
import libipld

from labeler.protocol import cbor, syntax
from labeler.protocol.crypto import SigningKey, verify
from labeler.protocol.ipld_json import bytes_to_b64, from_json

MAX_VALUE_BYTES: Final = 128
# SPEC-LABEL's advice: lower-case a-z with '-' as an internal separator; a leading '!' marks system values.
# The Bluesky client only applies a labeler's own definitions to values matching ^[a-z-]+$ (protocol.md §1.1).
VALUE_RE: Final = re.compile(r"!?[a-z]+(?:-[a-z]+)*")  # fullmatch: `$` would allow a trailing newline
LABEL_FIELDS: Final = frozenset({"ver", "src", "uri", "cid", "val", "neg", "cts", "exp", "sig"})

# `src` (our own DID) and `cts`/`exp` (one timestamp per millisecond) repeat from label to label, so their pure
# syntax checks are memoised; a failing check raises and is never cached.
_check_did: Final = functools.lru_cache(maxsize=256)(syntax.check_did)
_check_datetime: Final = functools.lru_cache(maxsize=1024)(syntax.check_datetime)


class InvalidLabel(ValueError):
    """A label field breaks the lexicon or the value-syntax rules."""


def check_value(val: str) -> str:
    if len(val.encode("utf-8")) > MAX_VALUE_BYTES:
        raise InvalidLabel(f"label value longer than {MAX_VALUE_BYTES} bytes")
    if not VALUE_RE.fullmatch(val):
        raise InvalidLabel(
            f"label value {val!r} must be lower-case a-z words joined by '-' (optionally starting with '!')"
        )
    return val


LABEL_VER: Final = 1  # the label schema version this labeler writes (the only one there is)


@dataclass(frozen=True, slots=True)
class Label:
    """A label as stored and served. `sig` is None only before signing."""

    src: str
    uri: str
    val: str
    cts: str
    cid: str | None = None
    neg: bool = False
    exp: str | None = None
    sig: bytes | None = None
    ver: int = LABEL_VER

    def validate(self) -> Label:
        """Raise InvalidLabel unless every field is well-formed; returns self for chaining."""
        if self.ver != 1:
            raise InvalidLabel("ver must be 1")
        try:
            _check_did(self.src)
            syntax.check_subject_uri(self.uri)
            if self.cid is not None:
                syntax.check_cid(self.cid)
                if not self.uri.startswith("at://"):
                    raise InvalidLabel("a cid pins a record version, so uri must be an at:// URI")
            _check_datetime(self.cts)
            if self.exp is not None:
                _check_datetime(self.exp)
        except InvalidLabel:
            raise
        except ValueError as exc:
            raise InvalidLabel(str(exc)) from None
        check_value(self.val)
        return self

    def unsigned(self) -> dict[str, Any]:
        """The signed field set: only schema fields present, `neg` only when true, never `sig` or `$type`."""
        fields: dict[str, Any] = {"ver": self.ver, "src": self.src, "uri": self.uri, "val": self.val, "cts": self.cts}
        if self.cid is not None:
            fields["cid"] = self.cid
        if self.neg:
            fields["neg"] = True
        if self.exp is not None:
            fields["exp"] = self.exp
        return fields

    def signing_bytes(self) -> bytes:
        # No bytes in the unsigned form, so libipld's CID heuristic cannot misfire here.
        return libipld.encode_dag_cbor(self.unsigned())

    def signed(self, key: SigningKey) -> Label:
        # A direct constructor call: dataclasses.replace costs more than the rest of this apart from signing.
        sig = key.sign(self.signing_bytes())
        return Label(self.src, self.uri, self.val, self.cts, self.cid, self.neg, self.exp, sig, self.ver)

    def verify(self, did_key: str) -> bool:
        return self.sig is not None and verify(did_key, self.signing_bytes(), self.sig)

    def to_ipld(self) -> dict[str, Any]:
        fields = self.unsigned()
        if self.sig is not None:
            fields["sig"] = self.sig
        return fields

    def to_json(self) -> dict[str, Any]:
        fields = self.unsigned()
        if self.sig is not None:
            fields["sig"] = {"$bytes": bytes_to_b64(self.sig)}
        return fields

    def to_cbor(self) -> bytes:
        """Canonical DAG-CBOR with `sig` as a byte string (`cbor_parts`)."""
        return b"".join(self.cbor_parts())

    def cbor_parts(self) -> Sequence[bytes]:
        return cbor_parts(self.src, self.uri, self.val, self.cts, self.cid, self.neg, self.exp, self.sig, self.ver)

    @classmethod
    def from_ipld(cls, data: dict[str, Any]) -> Label:
        """Build from a decoded CBOR (or `$bytes`-decoded JSON) label; rejects unknown or mistyped fields."""
        extra = set(data) - LABEL_FIELDS
        if extra:
            raise InvalidLabel(f"unknown label fields: {sorted(extra)}")
        try:
            label = cls(
                src=_typed(data, "src", str),
                uri=_typed(data, "uri", str),
                val=_typed(data, "val", str),
                cts=_typed(data, "cts", str),
                cid=_typed(data, "cid", str, required=False),
                neg=_typed(data, "neg", bool, required=False) or False,
                exp=_typed(data, "exp", str, required=False),
                sig=_typed(data, "sig", bytes, required=False),
                ver=_typed(data, "ver", int, required=False) or 0,
            )
        except (KeyError, TypeError) as exc:
            raise InvalidLabel(str(exc)) from None
        return label

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Label:
        return cls.from_ipld(from_json(data))


_TEXT_HEADS: Final = tuple(cbor.head(cbor.TEXT, n) for n in range(256))
_SIG_64: Final = b"csig" + cbor.head(cbor.BYTES, 64)


def cbor_parts(
    src: str, uri: str, val: str, cts: str, cid: str | None, neg: bool, exp: str | None, sig: bytes | None, ver: int
) -> Sequence[bytes]:
    """A label's canonical DAG-CBOR with `sig` as a byte string, from its fields (stream readers encode straight
    from database rows, without building a Label), as pieces to join: a stream frame joins them straight into
    itself, one copy.

    cbor2, not libipld: libipld writes ~1 in 1,200 signatures as CID links (sdk-notes.md §2). cbor2's canonical
    mode equals DAG-CBOR for labels because they hold no floats.

    This runs once per label on every stream frame (backfill and live), so labels are written directly,
    byte-identical to cbor2's canonical output (every key is 3 bytes, so canonical order is plain bytewise: cid,
    cts, exp, neg, sig, src, uri, val, ver); anything unusual goes through cbor2. Nearly every label has the
    first shape below (no cid, exp or neg, a 64-byte signature, short strings), which needs no decision per field.
    """
    try:
        if cid is None and exp is None and neg is False and ver == 1 and type(ver) is int and type(sig) is bytes:
            uri_raw, cts_raw = uri.encode("utf-8"), cts.encode("utf-8")
            if len(sig) == 64 and len(uri_raw) < 256 and len(cts_raw) < 256:
                return (
                    b"\xa6ccts", _TEXT_HEADS[len(cts_raw)], cts_raw, _SIG_64, sig,
                    b"csrc", cbor.repeated_text(src), b"curi", _TEXT_HEADS[len(uri_raw)], uri_raw,
                    b"cval", cbor.repeated_text(val), b"cver\x01",
                )  # fmt: skip
        if type(ver) is not int or not 0 <= ver < 24 or type(neg) is not bool:
            return (cbor2.dumps(Label(src, uri, val, cts, cid, neg, exp, sig, ver).to_ipld(), canonical=True),)
        parts = [b""]
        count = 5  # cts, src, uri, val, ver
        if cid is not None:
            parts += (b"ccid", cbor.text(cid))
            count += 1
        parts += (b"ccts", cbor.text(cts))
        if exp is not None:
            parts += (b"cexp", cbor.text(exp))
            count += 1
        if neg:
            parts.append(b"cneg\xf5")
            count += 1
        if sig is not None:
            parts += (b"csig", cbor.head(cbor.BYTES, len(sig)), sig)
            count += 1
        parts += (b"csrc", cbor.repeated_text(src), b"curi", cbor.text(uri), b"cval", cbor.repeated_text(val))
        parts.append(b"cver" + bytes((ver,)))
    except (AttributeError, TypeError, UnicodeError):
        return (cbor2.dumps(Label(src, uri, val, cts, cid, neg, exp, sig, ver).to_ipld(), canonical=True),)
    parts[0] = bytes((0xA0 | count,))
    return parts


def _typed(data: dict[str, Any], key: str, kind: type, *, required: bool = True) -> Any:
    if key not in data:
        if required:
            raise KeyError(f"missing label field {key!r}")
        return None
    value = data[key]
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise TypeError(f"label field {key!r} must be {kind.__name__}")
    return value


def verify_received(data: dict[str, Any], did_key: str) -> bool:
    """Verify a label exactly as received (CBOR-decoded, or JSON with `$bytes`): sign-input = fields minus sig.

    Re-encoding precisely the received fields is what makes `neg:false` or a missing `ver` detectable instead of
    silently "fixed" (protocol.md §1.2 item 6).
    """
    decoded = from_json(data)
    sig = decoded.get("sig")
    if not isinstance(sig, bytes):
        return False
    unsigned = {k: v for k, v in decoded.items() if k != "sig"}
    try:
        message = libipld.encode_dag_cbor(unsigned)
    except (ValueError, TypeError):
        return False
    return verify(did_key, message, sig)
