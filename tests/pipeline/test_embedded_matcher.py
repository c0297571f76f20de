"""EmbeddedMatcher: the Matcher contract over PdqIndex, and dihedral matching of rotated/mirrored copies."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from labeler.pipeline.hasher import hash_image
from labeler.pipeline.match.base import Match, Matcher, MatcherError, lookup_variants
from labeler.pipeline.match.embedded import EmbeddedMatcher
from labeler.pipeline.match.index import PdqIndex

from .corpus import encode, flip_bits, random_hashes, structured_rgb


async def test_lookup_sorted_with_metadata() -> None:
    anchor = random_hashes(1, seed=20)[0]
    index = PdqIndex.build(
        [
            (flip_bits(anchor, 9, seed=1), "B2", "far", "ext-far", None),
            (flip_bits(anchor, 2, seed=2), "B1", "near", None, "banked by ops"),
            (flip_bits(anchor, 40, seed=3), "B1", "too-far"),
        ]
    )
    matcher = EmbeddedMatcher(index)
    assert isinstance(matcher, Matcher)
    assert await matcher.ready()
    assert await matcher.lookup(anchor) == [
        Match("B1", "near", 2, None, "banked by ops"),
        Match("B2", "far", 9, "ext-far", None),
    ]
    assert await matcher.lookup(anchor, max_distance=5) == [Match("B1", "near", 2, None, "banked by ops")]
    assert await matcher.lookup(random_hashes(1, seed=21)[0]) == []
    await matcher.aclose()
    assert not await matcher.ready()


async def test_bad_hash_is_matcher_error() -> None:
    matcher = EmbeddedMatcher(PdqIndex())
    with pytest.raises(MatcherError):
        await matcher.lookup("A" * 64)
    with pytest.raises(MatcherError):
        await matcher.lookup("a" * 64, max_distance=999)


async def test_writes_compact_in_the_background() -> None:
    index = PdqIndex.build([(h, "A", str(i)) for i, h in enumerate(random_hashes(100, seed=22))])
    matcher = EmbeddedMatcher(index)
    late = random_hashes(6000, seed=23)
    assert await matcher.add_many((h, "B", str(i)) for i, h in enumerate(late)) == 6000
    await matcher.compacted()
    assert not index.needs_compaction
    assert await matcher.lookup(late[42]) == [Match("B", "42", 0)]
    assert await matcher.remove("B", "42")
    assert await matcher.lookup(late[42]) == []
    assert await matcher.remove_bank("A") == 100
    await matcher.aclose()


async def test_rotated_and_mirrored_copies_match_only_with_dihedral_variants() -> None:
    original = structured_rgb(480, 480, seed=30)
    banked = hash_image(encode(original, "PNG"))
    matcher = EmbeddedMatcher(PdqIndex.build([(banked.hash, "KNOWN", "img-1")]))
    copies = {
        "rot90": original.transpose(Image.Transpose.ROTATE_90),
        "mirror": original.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    }
    for name, im in copies.items():
        data = encode(im, "JPEG", quality=85)
        seen = hash_image(data, dihedral=True)
        assert seen.variants is not None
        assert await matcher.lookup(seen.hash) == [], name
        found = await lookup_variants(matcher, seen.variants)
        assert [(m.bank, m.entry_id) for m in found] == [("KNOWN", "img-1")], name
        assert found[0].distance <= 10, name
    # and a plain re-encode needs no variants
    again = hash_image(encode(Image.open(io.BytesIO(encode(original, "PNG"))), "JPEG", quality=80))
    assert [m.entry_id for m in await matcher.lookup(again.hash)] == ["img-1"]


def test_failures_survive_pickling() -> None:
    import pickle

    from labeler.pipeline.match.base import MatcherUnavailable

    for error in (MatcherUnavailable("HMA down", status=503), MatcherError("bad hash", status=400)):
        copy = pickle.loads(pickle.dumps(error))
        assert (type(copy), copy.message, copy.status, copy.retryable) == (
            type(error),
            error.message,
            error.status,
            error.retryable,
        )
