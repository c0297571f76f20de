"""`labeler` command line: one click group, one module per command group. Commands parse, call, print.

A command's module is imported when that command runs (or `--help` lists it), and the modules import what is
heavy (the service, SQLAlchemy, the SDK, the server) inside the commands that use it: `labeler --help` and a
`labeler label list` start without loading what `serve` needs (bench/bench_cli_start.py).
"""

from __future__ import annotations

import importlib
from typing import Final

import click

#: command name → "module:attribute" of its click command
COMMANDS: Final = {
    "actions": "labeler.cli.actions:actions",
    "bank": "labeler.cli.banks:bank",
    "db": "labeler.cli.db:db",
    "declare": "labeler.cli.declare:declare",
    "did": "labeler.cli.did:did",
    "doctor": "labeler.cli.doctor:doctor",
    "entries": "labeler.cli.entries:entries",
    "exchange": "labeler.cli.exchanges:exchange",
    "explain": "labeler.cli.explain:explain",
    "ingest": "labeler.cli.sources:ingest",
    "init": "labeler.cli.init:init",
    "keys": "labeler.cli.keys:keys",
    "label": "labeler.cli.labels:label",
    "moderators": "labeler.cli.moderators:moderators",
    "reports": "labeler.cli.reports:reports",
    "review": "labeler.cli.review:review",
    "serve": "labeler.cli.serve:serve",
    "worker": "labeler.cli.worker:worker",
}


class LazyGroup(click.Group):
    """Click's documented pattern for lazily loaded subcommands: the group knows names, not modules."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = COMMANDS[cmd_name].split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="atproto-hma-labeler")
def cli() -> None:
    """An AT Protocol labeler for known-harmful images. Settings come from LABELER_* variables or labeler.toml."""


def main() -> None:
    cli()
