"""subscribeLabels frames: header bytes from protocol.md, and signatures that survive an independent decoder."""

from __future__ import annotations

import io
import os
import random
from typing import Any

import cbor2
import libipld
import pytest
from vectors import json_cases

from labeler.protocol import frames
from labeler.protocol.label import Label

HEADERS = json_cases("frames/headers.json")


@pytest.mark.parametrize("case", HEADERS)
def test_constant_bytes(case: dict[str, Any]) -> None:
    if "header" in case:
        built = {
            "a2617467236c6162656c73626f7001": frames.HEADER_LABELS,
            "a261746523696e666f626f7001": frames.HEADER_INFO,
            "a1626f7020": frames.HEADER_ERROR,
        }[case["hex"]]
        assert built.hex() == case["hex"]
        assert cbor2.loads(built) == case["header"]
    else:
        assert frames.error_frame(case["body"]["error"]).hex() == frames.HEADER_ERROR.hex() + case["hex"]


def _two_objects(frame: bytes) -> tuple[Any, Any]:
    stream = io.BytesIO(frame)
    header, body = cbor2.load(stream), cbor2.load(stream)
    assert stream.read() == b""
    return header, body


def test_100k_random_signatures_decode_as_byte_strings() -> None:
    """The libipld trap (sdk-notes.md §2): ~1 in 1,200 random signatures would become CID links."""
    rng = random.Random(1234)
    base = Label(
        src="did:plc:abc", uri="at://did:plc:xyz/app.bsky.feed.post/3k", val="spam", cts="2024-01-01T00:00:00.000Z"
    )
    trapped = 0
    for seq in range(1, 100_001):
        sig = rng.randbytes(64)
        label = Label(**{**base.unsigned(), "sig": sig})
        if seq % 50 == 0 or sig[0] == 1:
            trapped += isinstance(cbor2.loads(libipld.encode_dag_cbor({"sig": sig}))["sig"], cbor2.CBORTag)
        frame = frames.label_frame(seq, label.cbor_parts())
        header, body = _two_objects(frame)
        assert header == {"op": 1, "t": "#labels"}
        got = body["labels"][0]["sig"]
        assert isinstance(got, bytes) and got == sig
        assert body["seq"] == seq
    assert trapped > 0, "premise: libipld turns some of these signatures into CID links"


def test_frames_decode_with_libipld_strictly() -> None:
    label = Label(src="did:plc:abc", uri="did:plc:xyz", val="spam", cts="2024-01-01T00:00:00.000Z", sig=os.urandom(64))
    header, body = frames.decode_frame(frames.label_frame(2**52, label.cbor_parts()))
    assert header["t"] == "#labels" and body["seq"] == 2**52 and body["labels"] == [label.to_ipld()]
    header, body = frames.decode_frame(frames.info_frame("OutdatedCursor", "old"))
    assert header == {"op": 1, "t": "#info"} and body == {"name": "OutdatedCursor", "message": "old"}


def test_label_cbor_is_canonical_dag_cbor() -> None:
    label = Label(
        src="did:plc:abc", uri="at://did:plc:xyz/app.bsky.feed.post/3k", val="spam", cts="2024-01-01T00:00:00.000Z",
        cid="bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm", neg=True, exp="2025-01-01T00:00:00.000Z",
        sig=b"\x02" * 64,
    )  # fmt: skip
    # libipld is a strict DAG-CBOR decoder (sorted keys, minimal heads) and this sig does not trip its encoder.
    assert libipld.encode_dag_cbor(libipld.decode_dag_cbor(label.to_cbor())) == label.to_cbor()
