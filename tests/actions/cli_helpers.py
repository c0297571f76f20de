"""Running `labeler …` commands in-process against a test's settings, as an operator's shell would."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from labeler.cli import cli
from labeler.config import Settings


def operator_shell(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """A `labeler` invoker whose environment names only the test's database, keys and DID."""
    for name in list(os.environ):
        if name.startswith("LABELER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABELER_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LABELER_KEYS_DIR", str(settings.keys_dir))
    monkeypatch.setenv("LABELER_DID", settings.did)
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(cli, list(args))

    return invoke


def succeeds(invoke: Callable[..., Result], *args: str) -> str:
    """The output of a command that must exit 0 (its output is the failure message otherwise)."""
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output
