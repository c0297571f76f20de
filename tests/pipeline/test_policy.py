"""Policy rules: configuration, thresholds, subjects."""

from __future__ import annotations

import pytest

from labeler.config import ConfigError
from labeler.pipeline.match.base import Match
from labeler.pipeline.policy import Rule, load_policy

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
    assert (near.kinds, near.subject_uri, near.subject_cid) == (("label",), POST, CID)
    assert far.kinds == ("review",)
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
    assert decisions["ncmec"].kinds == ("label",) and decisions["ncmec"].match.entry_id == "4"
    spam = decisions["spam-accounts"]
    assert (spam.kinds, spam.subject_uri, spam.subject_cid) == (("review",), "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", None)
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
    decisions = {d.rule.name: (d.kinds, d.match) for d in policy.decide([md5, pdq], POST, CID)}
    assert decisions == {"exact": (("label",), md5), "perceptual": (("review",), pdq)}
    assert [d.rule.name for d in policy.decide([pdq], POST, CID)] == ["perceptual"]
    # Without `signals` a rule acts on every signal type; exact matches are at distance 0.
    [default] = load_policy({}, "csam-hash-match").decide([md5], POST, CID)
    assert (default.kinds, default.rule.signals) == (("label",), ("pdq", "md5", "sha256", "vpdq"))


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
        ({"labels": ["x"], "takedown_distance": -2}, "takedown_distance"),
        ({"labels": ["x"], "report_distance": "10"}, "report_distance"),
        ({"labels": ["x"], "takedown_subject": "blob"}, "takedown_subject"),
        ({"labels": ["x"], "report_reason": "#reasonSpam"}, "report_reason"),
        ({"labels": ["x"], "report_reason": "com.atproto.moderation.defs#reasonAppeal"}, "report_reason"),
        ({"labels": ["x"], "priority": 1001}, "priority"),
        ({"labels": ["x"], "priority": "high"}, "priority"),
    ],
)
def test_bad_rules_are_config_errors(rule: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_policy({"policy": {"rules": [rule]}}, "x")


def test_each_action_has_its_own_threshold() -> None:
    rule = {
        "name": "csam", "banks": ["CS"], "labels": ["!hide"], "label_distance": -1, "review_distance": 31,
        "takedown_distance": 10, "report_distance": 20, "webhook_distance": 31,
        "report_reason": "tools.ozone.report.defs#reasonChildSafetyCSAM",
    }  # fmt: skip
    policy = load_policy({"policy": {"rules": [rule]}}, "unused")

    def kinds(distance: int) -> tuple[str, ...]:
        [decision] = policy.decide([Match("CS", "1", distance)], POST, CID)
        return decision.kinds

    assert kinds(3) == ("review", "takedown", "report", "webhook")
    assert kinds(15) == ("review", "report", "webhook")
    assert kinds(31) == ("review", "webhook")
    assert policy.decide([Match("CS", "1", 32)], POST, CID) == []
    [csam] = policy.rules
    assert csam.confirmed_kinds() == ("label", "takedown", "report", "webhook")
    assert csam.descriptive_labels() == []


def test_a_rule_with_nothing_to_do_at_a_distance_does_not_act() -> None:
    only_webhook = {"labels": ["x"], "label_distance": -1, "review_distance": -1, "webhook_distance": 31}
    policy = load_policy({"policy": {"rules": [only_webhook]}}, "unused")
    assert policy.decide([Match("ANY", "1", 0)], POST, CID) == []
    [rule] = policy.rules
    assert rule.confirmed_kinds() == ("label", "webhook")


def test_child_safety_banks_get_a_default_with_no_public_label_before_confirmation() -> None:
    policy = load_policy({}, "csam-hash-match", child_safety_banks=["NCMEC"], takedown=True, report=False)
    child, default = policy.rules
    assert (child.banks, child.labels, child.label_distance, child.takedown_distance) == (
        ("NCMEC",),
        ("!hide",),
        -1,
        10,
    )
    assert child.report_distance is None and child.descriptive_labels() == []
    [near] = policy.decide([Match("NCMEC", "1", 2)], POST, CID)
    assert (near.rule.name, near.kinds) == ("child-safety", ("review", "takedown"))
    [far] = policy.decide([Match("NCMEC", "1", 25)], POST, CID)
    assert far.kinds == ("review",)
    [other] = policy.decide([Match("OTHER", "1", 2)], POST, CID)
    assert (other.rule.name, other.kinds) == ("default", ("label",))
    assert not default.covers_bank("NCMEC") and default.labels == ("csam-hash-match",)


def test_rules_round_trip_through_evidence() -> None:
    rule = load_policy({}, "x", child_safety_banks=["A"], takedown=True, report=True).rules[0]
    assert Rule.from_json(rule.to_json()) == rule
    [urgent] = load_policy({"policy": {"rules": [{"labels": ["x"], "priority": 5}]}}, "x").rules
    assert (urgent.priority, Rule.from_json(urgent.to_json())) == (5, urgent)
    old = {
        "name": "default",
        "banks": ["*"],
        "labels": ["x"],
        "label_distance": 10,
        "review_distance": 31,
        "subject": "post",
    }
    assert Rule.from_json(old) == Rule("default", ("*",), ("x",))  # evidence written before actions had thresholds
