"""`labeler doctor` on actions: a descriptive public label on child-safety matches is warned about."""

from __future__ import annotations

from typing import Any

import pytest

from labeler.pipeline.actions.config import load_actions
from labeler.pipeline.actions.doctor import child_safety_finding
from labeler.pipeline.policy import load_policy


def finding(extra: dict[str, Any]) -> tuple[str, str]:
    config = load_actions(extra)
    policy = load_policy(extra, "csam-hash-match", child_safety_banks=config.child_safety_banks)
    result = child_safety_finding(policy, config)
    return result.status, result.message


def test_the_child_safety_default_is_quiet() -> None:
    status, message = finding({"actions": {"child_safety_banks": ["NCMEC"]}})
    assert status == "ok" and "NCMEC" in message


@pytest.mark.parametrize(
    "rule",
    [
        {"banks": ["NCMEC"], "labels": ["csam-hash-match"]},  # the old default, written out
        {"banks": ["*"], "labels": ["!hide", "known-abuse"], "label_distance": -1},  # public after confirmation
    ],
)
def test_a_rule_publishing_a_descriptive_label_for_a_child_safety_bank_is_warned(rule: dict[str, Any]) -> None:
    status, message = finding({"actions": {"child_safety_banks": ["NCMEC"]}, "policy": {"rules": [rule]}})
    assert status == "warn" and "NCMEC" in message and "public index" in message


def test_global_values_only_are_fine_and_other_banks_do_not_count() -> None:
    rules = [
        {"banks": ["NCMEC"], "labels": ["!hide"], "label_distance": -1},
        {"banks": ["SPAM"], "labels": ["spam"]},
    ]
    assert finding({"actions": {"child_safety_banks": ["NCMEC"]}, "policy": {"rules": rules}})[0] == "ok"
