"""The fuzz test's machinery: hostile values, mutations of valid JSON bodies, and per-route request generators.

A generator is a function `(rng) -> Probe`: one request, described as data (method, path, raw query string,
which credentials, body), so that a seed reproduces the run's inputs exactly. Credentials are named, not held:
service tokens must be fresh (a `jti` is accepted once), so they are minted when the probe is sent.
The route table itself is in `test_fuzz.py`.
"""

from __future__ import annotations

import io
import json
import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlencode

from PIL import Image

from .callers import POST_CID, VIOLATION

# Credentials a probe may carry; test_fuzz.py turns each name into headers.
ADMIN: Final = "admin"  # HTTP Basic with the operator's password
MODERATOR: Final = "moderator"  # a configured moderator's service token, for the probe's `lxm`
REPORTER: Final = "reporter"  # any account's service token (createReport), for the probe's `lxm`
UPLOAD: Final = "upload"  # the upload API's bearer token
CONSOLE: Final = "console"  # a signed-in console session cookie; CSRF_MARK in the body becomes its CSRF token
CONSOLE_SPARE: Final = "console-spare"  # another signed-in session, for the probes that sign out
CONSOLE_GUEST: Final = "console-guest"  # the sign-in page's session cookie (no user) and its CSRF token
NONE: Final = "none"
GARBAGE: Final = "garbage"  # malformed or wrong credentials of every kind

CSRF_MARK: Final = b"__csrf__"

EMIT: Final = "tools.ozone.moderation.emitEvent"
QUERY_STATUSES: Final = "tools.ozone.moderation.queryStatuses"
QUERY_EVENTS: Final = "tools.ozone.moderation.queryEvents"
CREATE_REPORT: Final = "com.atproto.moderation.createReport"


@dataclass
class Probe:
    """One request to send. `path_params` are percent-encoded values for the route's `{name}` segments (the
    runner fills them into `path`); `query` is the raw query string."""

    method: str
    path_params: dict[str, str] = field(default_factory=dict)
    query: str = ""
    auth: str = NONE
    lxm: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    websocket: bool = False
    path: str = ""

    def describe(self) -> str:
        body = "" if self.body is None else f" body={self.body[:300]!r}{'…' if len(self.body) > 300 else ''}"
        return f"{self.method} {self.path}{'?' + self.query[:300] if self.query else ''} auth={self.auth}{body}"


Generator = Callable[[random.Random], Probe]
#: Values to put in a path's `{name}` segments: name → generator of raw (unencoded) values.
PathFill = dict[str, Callable[[random.Random], str]] | None

# Strings that have broken parsers somewhere: empty, whitespace, NUL and control characters, lone surrogates
# (sent as JSON escapes), non-ASCII digits, signs, huge numbers, SQL and format metacharacters, path tricks,
# identifiers that almost parse, and very long ones.
NASTY_STRINGS: Final[list[str]] = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "x\ud83d",
    "\ud83d\ude00",
    "\t\r\n",
    "\u202e",
    "\ufeff",
    "\u0665",
    "e\u0301" * 50,
    "--5",
    "-5",
    "+5",
    "-0",
    "0",
    "1",
    "9" * 25,
    "1e3",
    "0x10",
    "NaN",
    "Infinity",
    "null",
    "true",
    "[]",
    "{}",
    "'",
    '"',
    "\\",
    "' OR 1=1--",
    "%s%n{0}",
    "../../etc/passwd",
    "*",
    "**",
    "a*b",
    "%",
    "%00",
    "%ff",
    "did:plc:",
    "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
    "did:web:localhost",
    "did:web:127.0.0.1",
    "did:plc:a\n",
    "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/3k",
    "at://did:plc:a/x",
    "at://",
    POST_CID,
    POST_CID + "x",
    "spam",
    "!hide",
    "Spam",
    "spam-",
    "tools.ozone.moderation.defs#modEventLabel",
    "com.atproto.admin.defs#repoRef",
    "com.atproto.repo.strongRef",
    VIOLATION,
    "a" * 129,
    "é" * 3000,
    "x" * 20_000,
]
NASTY_INTEGERS: Final[list[Any]] = [0, -1, 1, 2, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30]
NASTY_NUMBERS: Final[list[Any]] = [*NASTY_INTEGERS, 1.5, -0.0, 1e308, True, False, None]


def nasty_json(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value of any type, hostile in content or shape (deep, long, oddly typed)."""
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(NASTY_STRINGS)
    if roll < 0.7:
        return rng.choice(NASTY_NUMBERS)
    if roll < 0.8 and depth < 3:
        return [nasty_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.9 and depth < 3:
        return {rng.choice(NASTY_STRINGS): nasty_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if roll < 0.95:
        deep: Any = rng.choice(NASTY_STRINGS)
        for _ in range(rng.choice([31, 32, 33, 60, 500])):
            deep = [deep] if rng.random() < 0.5 else {"k": deep}
        return deep
    return [rng.choice(NASTY_NUMBERS)] * rng.choice([1000, 10_000])


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every node of a JSON value (the root is `()`)."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _nodes(item, (*path, index))
    return found


def mutate(rng: random.Random, valid: Any) -> Any:
    """`valid` (a fresh copy) with one to three hostile changes: a node replaced, a key dropped or added, a
    string poisoned; about a third of the time unchanged, so that valid requests change state as well."""
    value = json.loads(json.dumps(valid))
    if rng.random() < 0.3:
        return value
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_nodes(value))
        if not path:
            value = nasty_json(rng)
            continue
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        if not isinstance(parent, dict | list):
            continue
        action = rng.random()
        if action < 0.5:
            parent[path[-1]] = nasty_json(rng)
        elif action < 0.65 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action < 0.8 and isinstance(parent, dict):
            parent[rng.choice([*NASTY_STRINGS[:12], "$type", "extra"])] = nasty_json(rng)
        elif isinstance(parent[path[-1]], str):
            parent[path[-1]] += rng.choice(["\ud800", "\x00", "\udc00x", "\u0000\u0000", "\n"])
    return value


def encode_body(rng: random.Random, value: Any) -> bytes:
    """JSON bytes, usually well formed; sometimes broken at the byte level in the ways parsers trip over."""
    text = json.dumps(value)  # ensure_ascii: lone surrogates become \\udXXX escapes, as a hostile client sends them
    roll = rng.random()
    if roll < 0.8:
        return text.encode()
    corruptions: list[Callable[[], bytes]] = [
        lambda: text[: rng.randint(0, len(text))].encode(),  # truncated
        lambda: b"\xff\xfe" + text.encode(),  # not UTF-8
        lambda: "\ufeff".encode() + text.encode(),  # a byte-order mark
        lambda: text.encode("utf-16"),
        lambda: text.replace("}", ', "dup": 1, "dup": NaN}', 1).encode(),
        lambda: text.replace(":", ': Infinity, "z":', 1).encode(),
        lambda: rng.choice([b"", b" ", b"null", b"[]", b'"x"', b"1", b"{", b"[" * 100_000, b'{"a":' * 50_000]),
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))),
    ]
    return rng.choice(corruptions)()


def nasty_param(rng: random.Random) -> str:
    """A query-string value, percent-encoded; sometimes raw bytes that are not UTF-8."""
    if rng.random() < 0.15:
        return rng.choice(["%00", "%ff", "%ED%A0%80", "%C0%80", "%", "%zz", "a%00b", "%2A"])
    return _quote(rng.choice(NASTY_STRINGS))


def query_string(rng: random.Random, valid: Sequence[tuple[str, Callable[[random.Random], str]]]) -> str:
    """A raw query string from the route's parameters: valid values, hostile ones, repeats and unknown names."""
    parts = []
    for name, good in valid:
        roll = rng.random()
        if roll < 0.35:
            continue
        repeats = 2 if rng.random() < 0.05 else 1
        for _ in range(repeats):
            value = _quote(good(rng), safe="*:/") if roll < 0.75 else nasty_param(rng)
            parts.append(f"{name}={value}")
    if rng.random() < 0.1:
        parts.append(f"{_quote(rng.choice(NASTY_STRINGS))}={nasty_param(rng)}")
    rng.shuffle(parts)
    return "&".join(parts)


def choose(*values: Any) -> Callable[[random.Random], str]:
    return lambda rng: str(rng.choice(values))


def small_int(low: int, high: int) -> Callable[[random.Random], str]:
    return lambda rng: str(rng.randint(low, high))


def random_did(rng: random.Random) -> str:
    return "did:plc:" + "".join(rng.choice(string.ascii_lowercase + "234567") for _ in range(24))


def subject_uri(rng: random.Random) -> str:
    did = random_did(rng)
    return rng.choice([did, f"at://{did}/app.bsky.feed.post/3k{rng.randint(0, 99)}"])


def subject_ref(rng: random.Random) -> dict[str, Any]:
    did = random_did(rng)
    if rng.random() < 0.5:
        return {"$type": "com.atproto.admin.defs#repoRef", "did": did}
    return {"$type": "com.atproto.repo.strongRef", "uri": f"at://{did}/app.bsky.feed.post/3k", "cid": POST_CID}


def emit_event_body(rng: random.Random) -> dict[str, Any]:
    """A valid emitEvent body of any kind this labeler accepts."""
    defs = "tools.ozone.moderation.defs#"
    kind = rng.choice(["Label", "Label", "Label", "Acknowledge", "ResolveAppeal", "Comment"])
    event: dict[str, Any] = {"$type": defs + "modEvent" + kind, "comment": "fuzz"}
    if kind == "Label":
        event["createLabelVals"] = rng.sample(["spam", "porn", "gore", "!hide"], rng.randint(0, 2))
        event["negateLabelVals"] = rng.sample(["spam", "nudity"], rng.randint(0 if event["createLabelVals"] else 1, 1))
        if rng.random() < 0.3:
            event["durationInHours"] = rng.randint(1, 48)
    body: dict[str, Any] = {"event": event, "subject": subject_ref(rng), "subjectBlobCids": []}
    if rng.random() < 0.5:
        body["modTool"] = {"name": "fuzz", "meta": {"n": 1}}
    return body


def report_body(rng: random.Random) -> dict[str, Any]:
    """A valid createReport body."""
    reason_type = rng.choice([VIOLATION, "tools.ozone.report.defs#reasonChildSafetyCSAM"])
    body: dict[str, Any] = {"reasonType": reason_type, "subject": subject_ref(rng), "reason": "fuzz"}
    if rng.random() < 0.5:
        body["modTool"] = {"name": "bsky-app/android", "meta": {"v": 1}}
    return body


def hash_body(rng: random.Random) -> dict[str, Any]:
    """A valid upload-API JSON body: some of a PDQ hash, an MD5, a SHA-256 and a vPDQ hash (frame features)."""
    hashes: dict[str, Any] = {"hash": f"{rng.getrandbits(256):064x}", "md5": f"{rng.getrandbits(128):032x}"}
    hashes["sha256"] = f"{rng.getrandbits(256):064x}"
    hashes["vpdq"] = [f"{rng.getrandbits(256):064x},{rng.randint(0, 100)},{n}.0" for n in range(rng.randint(1, 4))]
    return dict(rng.sample(sorted(hashes.items()), rng.randint(1, 4)))


def _tiny_png() -> bytes:
    out = io.BytesIO()
    Image.radial_gradient("L").resize((48, 48)).convert("RGB").save(out, "PNG")
    return out.getvalue()


TINY_PNG: Final = _tiny_png()


# The start of an MP4 (an ISO `ftyp` box): the upload API takes what follows as a video.
MP4_HEAD: Final = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def image_body(rng: random.Random) -> bytes:
    """A small image, a damaged one, bytes that only pretend to be one, or bytes that pretend to be a video."""
    roll = rng.random()
    if roll < 0.1:
        return MP4_HEAD + bytes(rng.randrange(256) for _ in range(rng.randint(0, 512)))
    if roll < 0.2:
        return TINY_PNG
    if roll < 0.6:
        data = bytearray(TINY_PNG)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data[: rng.randint(8, len(data))])
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 512)))


def json_route(
    method: str, valid_body: Callable[[random.Random], Any], *, auth: str, lxm: str = "", path: PathFill = None
) -> Generator:
    """POSTs of mutated valid bodies, with now and then the wrong method, content type or credentials."""

    def generate(rng: random.Random) -> Probe:
        probe = Probe(
            method=_method(rng, method),
            path_params=_fill(rng, path),
            auth=_auth(rng, auth),
            lxm=lxm,
            headers={"content-type": _content_type(rng, "application/json")},
            body=encode_body(rng, mutate(rng, valid_body(rng))),
        )
        if rng.random() < 0.01:
            probe.body = b" " * (300 * 1024)  # over the body limit
        return probe

    return generate


def mutated_fields(rng: random.Random, valid: dict[str, str]) -> list[tuple[str, str]]:
    """A form's fields and its CSRF token (CSRF_MARK), valid but for one hostile value, a dropped or repeated
    field, or an extra hostile one, half of the time."""
    fields = [*valid.items(), ("csrf", CSRF_MARK.decode())]
    roll = rng.random()
    if roll < 0.25:
        at = rng.randrange(len(fields))
        fields[at] = (fields[at][0], rng.choice(NASTY_STRINGS))
    elif roll < 0.35:
        del fields[rng.randrange(len(fields))]
    elif roll < 0.45:
        fields.append(rng.choice(fields))
    elif roll < 0.5:
        fields.append((rng.choice(NASTY_STRINGS), rng.choice(NASTY_STRINGS)))
    return fields


def form_route(
    valid_fields: Callable[[random.Random], dict[str, str]], *, auth: str, path: PathFill = None
) -> Generator:
    """POSTs of urlencoded forms (the console's), valid but for one hostile field, a dropped or repeated one, a
    wrong CSRF token, or bytes that are not a form at all; now and then the wrong method or content type."""

    def generate(rng: random.Random) -> Probe:
        fields = mutated_fields(rng, valid_fields(rng))
        body = urlencode(fields, errors="surrogatepass").encode()
        if rng.random() < 0.05:
            body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        elif rng.random() < 0.01:
            body = b"a=" + b"x" * (64 * 1024)  # over the form limit
        headers = {"content-type": _content_type(rng, "application/x-www-form-urlencoded")}
        return Probe(_method(rng, "POST"), _fill(rng, path), auth=_auth(rng, auth), headers=headers, body=body)

    return generate


def multipart_route(
    valid_fields: Callable[[random.Random], dict[str, str]],
    file_body: Callable[[random.Random], bytes],
    *,
    auth: str,
) -> Generator:
    """POSTs of multipart forms with one file (the console's bank import): the fields mutated as `form_route`
    does, hostile file names and contents, and now and then a damaged body (cut short, a second file or none, a
    header naming another boundary or none)."""

    def generate(rng: random.Random) -> Probe:
        boundary = "fuzz" + "".join(rng.choice(string.ascii_letters) for _ in range(16))
        fields = mutated_fields(rng, valid_fields(rng))
        filename = rng.choice(["list.csv", "list.tsv", "list.txt", "", "../../x.csv", "a\x00.csv", 'q".csv', "é" * 300])
        files = [("file", filename, file_body(rng))] * (2 if rng.random() < 0.05 else 1)
        if rng.random() < 0.05:
            files = []
        chunks = [_part(boundary, f'name="{name}"', value.encode("utf-8", "surrogatepass")) for name, value in fields]
        chunks += [_part(boundary, f'name="{n}"; filename="{f}"\r\nContent-Type: text/csv', d) for n, f, d in files]
        body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
        damage = rng.random()
        if damage < 0.05:
            body = body[: rng.randrange(len(body) + 1)]
        elif damage < 0.08:
            boundary = "other"
        header = "multipart/form-data" if 0.08 <= damage < 0.1 else f"multipart/form-data; boundary={boundary}"
        headers = {"content-type": _content_type(rng, header)}
        return Probe(_method(rng, "POST"), auth=_auth(rng, auth), headers=headers, body=body)

    return generate


def _part(boundary: str, disposition: str, data: bytes) -> bytes:
    head = f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n".encode("utf-8", "surrogatepass")
    return head + data + b"\r\n"


def bank_file_body(rng: random.Random) -> bytes:
    """A hash list as a bank import reads it: good rows, a bad one among them, or bytes that are not one."""
    roll = rng.random()
    if roll < 0.2:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 512)))
    rows = [f"{rng.getrandbits(256):064x},fuzz-{n}" for n in range(rng.randint(0, 30))]
    if roll < 0.5 and rows:
        rows[rng.randrange(len(rows))] = rng.choice(NASTY_STRINGS)
    elif roll < 0.6:
        rows.insert(0, rng.choice(["hash,external_id,note", "note,id", "md5", "\ufeffhash"]))
    return "\n".join(rows).encode("utf-8", "surrogatepass")


def query_route(
    params: Sequence[tuple[str, Callable[[random.Random], str]]] = (),
    *,
    auth: str = NONE,
    lxm: str = "",
    path: PathFill = None,
) -> Generator:
    """GETs with hostile query strings (and path parameters), now and then with another method."""

    def generate(rng: random.Random) -> Probe:
        return Probe(_method(rng, "GET"), _fill(rng, path), query_string(rng, params), _auth(rng, auth), lxm)

    return generate


def websocket_route(params: Sequence[tuple[str, Callable[[random.Random], str]]]) -> Generator:
    """WebSocket upgrades with hostile query strings."""

    def generate(rng: random.Random) -> Probe:
        return Probe("GET", query=query_string(rng, params), websocket=True)

    return generate


def upload_route(json_body: Callable[[random.Random], Any] | None = None) -> Generator:
    """The upload API: image bytes (or, where accepted, a JSON hash) under any content type."""

    def generate(rng: random.Random) -> Probe:
        if json_body is not None and rng.random() < 0.4:
            body, content_type = encode_body(rng, mutate(rng, json_body(rng))), "application/json"
        else:
            body, content_type = image_body(rng), rng.choice(["image/png", "application/octet-stream", "image/jpeg"])
        headers = {"content-type": _content_type(rng, content_type)}
        return Probe(_method(rng, "POST"), auth=_auth(rng, UPLOAD), headers=headers, body=body)

    return generate


def _fill(rng: random.Random, fill: PathFill) -> dict[str, str]:
    return {name: _quote(make(rng)) for name, make in (fill or {}).items()}


def _quote(value: str, safe: str = "") -> str:
    """Percent-encoded UTF-8; a lone surrogate becomes the bytes a hostile client would send (%ED%A0%80)."""
    return quote(value, safe=safe, errors="surrogatepass")


def _method(rng: random.Random, method: str) -> str:
    return method if rng.random() < 0.95 else rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])


def _auth(rng: random.Random, auth: str) -> str:
    """Mostly the route's own credentials (for moderator routes, the operator's half of the time)."""
    roll = rng.random()
    if auth == NONE or roll < 0.94:
        return ADMIN if auth == MODERATOR and rng.random() < 0.5 else auth
    return NONE if roll < 0.97 else GARBAGE


def _content_type(rng: random.Random, content_type: str) -> str:
    if rng.random() < 0.9:
        return content_type
    return rng.choice(["", "text/plain", "application/json; charset=latin-1", "multipart/form-data; boundary=x"])
