"""Policy rules: configuration, thresholds, subjects."""

from __future__ import annotations

import pytest

from labeler.config import ConfigError
from labeler.pipeline.match.base import Match
from labeler.pipeline.policy import load_policy

POST = "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/app.bsky.feed.post/3k"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"


def test_default_policy_labels_near_matches_and_reviews_the_rest() -> None:
    policy = load_policy({}, "csam-hash-match")
    [rule] = policy.rules
    assert (rule.banks, rule.labels, rule.label_distance, rule.review_distance) == (
        ("*",), ("csam-hash-match",), 10, 31,
    )  # fmt: skip
    [near] = policy.decide([Match("ANY", "1", 10)], POST, CID)
    [far] = policy.decide([Match("ANY", "1", 11)], POST, CID)
    assert (near.action, near.subject_uri, near.subject_cid) == ("label", POST, CID)
    assert far.action == "review"
    assert policy.decide([Match("ANY", "1", 32)], POST, CID) == []


def test_rules_by_bank_with_account_subjects() -> None:
    policy = load_policy(
        {
            "policy": {
                "rules": [
                    {"name": "ncmec", "banks": ["NCMEC"], "labels": ["csam-hash-match"], "label_distance": 31},
                    {
                        "name": "spam-accounts",
                        "banks": ["SPAM"],
                        "labels": ["spam", "!hide"],
                        "label_distance": -1,
                        "review_distance": 20,
                        "subject": "account",
                    },
                ]
            }
        },
        "unused",
    )
    matches = [Match("SPAM", "9", 3), Match("NCMEC", "4", 25), Match("OTHER", "1", 0)]
    decisions = {d.rule.name: d for d in policy.decide(sorted(matches, key=lambda m: m.distance), POST, CID)}
    assert decisions["ncmec"].action == "label" and decisions["ncmec"].match.entry_id == "4"
    spam = decisions["spam-accounts"]
    assert (spam.action, spam.subject_uri, spam.subject_cid) == ("review", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", None)
    assert spam.rule.labels == ("spam", "!hide")


def test_rules_can_name_signal_types() -> None:
    policy = load_policy(
        {
            "policy": {
                "rules": [
                    {"name": "exact", "signals": ["md5", "sha256"], "labels": ["known-file"]},
                    {"name": "perceptual", "signals": ["pdq"], "labels": ["near"], "label_distance": -1},
                ]
            }
        },
        "unused",
    )
    md5, pdq = Match("FILES", "1", 0, signal_type="md5"), Match("IMAGES", "2", 0)
    decisions = {d.rule.name: (d.action, d.match) for d in policy.decide([md5, pdq], POST, CID)}
    assert decisions == {"exact": ("label", md5), "perceptual": ("review", pdq)}
    assert [d.rule.name for d in policy.decide([pdq], POST, CID)] == ["perceptual"]
    # Without `signals` a rule acts on every signal type; exact matches are at distance 0.
    [default] = load_policy({}, "csam-hash-match").decide([md5], POST, CID)
    assert (default.action, default.rule.signals) == ("label", ("pdq", "md5", "sha256"))


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"labels": ["x"], "signals": ["crc32"]}, "signals"),
        ({"labels": ["x"], "signals": []}, "signals"),
        ({"labels": []}, "labels"),
        ({"labels": ["x"], "banks": "NCMEC"}, "banks"),
        ({"labels": ["x"], "label_distance": 300}, "label_distance"),
        ({"labels": ["x"], "review_distance": True}, "review_distance"),
        ({"labels": ["x"], "subject": "thread"}, "subject"),
        ({"labels": ["x"], "treshold": 3}, "unknown keys"),
    ],
)
def test_bad_rules_are_config_errors(rule: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_policy({"policy": {"rules": [rule]}}, "x")
