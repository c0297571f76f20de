"""Light commands start without importing what they do not use (issue 16, item 12): the CLI loads a command's
module when it runs, and the modules import the server, the console and the SDK's client inside the commands
that need them. What is imported is checked here; how long it takes is bench/bench_cli_start.py's job."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from labeler.cli import COMMANDS, cli

SERVER_AND_SDK = ("uvicorn", "starlette", "jinja2", "atproto_client")
MIGRATIONS_AND_IMAGING = ("alembic", "numpy", "PIL", "pdqhash")


def test_every_listed_command_loads_under_its_name() -> None:
    context = click.Context(cli)
    assert cli.list_commands(context) == sorted(COMMANDS)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(limit=10_000) == COMMANDS[name][1]  # what --help lists without loading it


def imported_by(args: list[str], cwd: Path) -> set[str]:
    code = (
        "import sys\nfrom labeler.cli import cli\n"
        f"try:\n    cli({args!r}, standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sys.modules))"
    )
    env = {**os.environ, "LABELER_DATABASE_URL": f"sqlite:///{cwd / 'l.db'}", "LABELER_DID": "did:plc:startstartstart"}
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("args", [["--help"], ["keys", "list"]])
def test_help_and_keys_list_do_not_build_the_service(args: list[str], tmp_path: Path) -> None:
    assert imported_by(args, tmp_path) & {"labeler.service", *SERVER_AND_SDK, *MIGRATIONS_AND_IMAGING} == set()


def test_help_loads_no_command_module(tmp_path: Path) -> None:
    assert {m for m in imported_by(["--help"], tmp_path) if m.startswith("labeler.cli.")} == set()


def test_label_list_reads_the_store_without_the_service(tmp_path: Path) -> None:
    imported = imported_by(["label", "list"], tmp_path)
    assert imported & {"labeler.service", *SERVER_AND_SDK, *MIGRATIONS_AND_IMAGING} == set()
    assert not (tmp_path / "l.db").exists()  # nothing labelled here: no empty database left behind
