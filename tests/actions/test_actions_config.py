"""`[actions]` settings: secrets only from owner-only files and never shown, every key checked, and a rule that
takes an action with no configuration refused at start."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from labeler.config import ConfigError
from labeler.pipeline.actions.config import check_policy, load_actions
from labeler.pipeline.policy import load_policy

SECRET = "correct horse battery staple"


def secret(tmp_path: Path, mode: int = stat.S_IRUSR | stat.S_IWUSR) -> str:
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    path.chmod(mode)
    return str(path)


def takedown(tmp_path: Path, **over: Any) -> dict[str, Any]:
    return {
        "actions": {"takedown": {"pds_url": "https://pds.example/", "admin_password_file": secret(tmp_path), **over}}
    }


def test_a_takedown_pds_with_its_password_from_a_private_file(tmp_path: Path) -> None:
    config = load_actions(takedown(tmp_path))
    assert config.takedown is not None
    assert (config.takedown.pds_url, config.takedown.hosts) == ("https://pds.example", ("https://pds.example",))
    assert config.takedown.admin_password == SECRET and SECRET not in repr(config)


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = secret(tmp_path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600") as refused:
        load_actions({"actions": {"takedown": {"pds_url": "https://pds.example", "admin_password_file": path}}})
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"actions": {"child_safety_banks": "NCMEC"}}, "child_safety_banks"),
        ({"actions": {"flood_matches": -1}}, "flood_matches"),
        ({"actions": {"retries": 3}}, "unknown keys"),
        ({"actions": {"takedown": {"pds_url": "ftp://x", "admin_password_file": "/nonexistent"}}}, "pds_url"),
        ({"actions": {"takedown": {"pds_url": "https://x", "admin_password_file": "/nonexistent"}}}, "cannot read"),
        ({"actions": {"report": {"service_did": "bsky", "pds_url": "https://x"}}}, "service_did"),
        ({"review": {"webhook_url": "https://hook.example", "webhook_secret": "short"}}, "webhook_secret"),
    ],
)
def test_bad_settings_name_the_key(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_actions(extra)


def test_a_rule_needs_its_action_configured(tmp_path: Path) -> None:
    rules = {"policy": {"rules": [{"labels": ["!hide"], "takedown_distance": 10, "report_distance": -1}]}}
    with pytest.raises(ConfigError, match="takedown_distance needs"):
        check_policy(load_policy(rules, "x"), load_actions({}))
    with pytest.raises(ConfigError, match="report_distance needs"):
        check_policy(load_policy(rules, "x"), load_actions(takedown(tmp_path)))
