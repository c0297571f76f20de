"""`labeler` command line: one click group, one module per command group. Commands parse, call, print.

A command's module is imported when that command runs (or `--help` lists it), and the modules import what is
heavy (the service, SQLAlchemy, the SDK, the server) inside the commands that use it: `labeler --help` and a
`labeler label list` start without loading what `serve` needs (bench/bench_cli_start.py).
"""

from __future__ import annotations

import importlib
from typing import Final

import click

#: command name → ("module:attribute" of its click command, its one-line help as `labeler --help` lists it). The
#: line is kept here so that listing the commands imports none of them (tests/cli/test_cli_start.py holds it to
#: each command's own docstring).
COMMANDS: Final = {
    "actions": (
        "labeler.cli.actions:actions",
        "Actions taken after matches (labels, reviews, takedowns, reports, webhooks) and their reversals.",
    ),
    "bank": ("labeler.cli.banks:bank", 'Hash banks (embedded, or HMA\'s with matcher = "hma").'),
    "db": ("labeler.cli.db:db", "Database schema."),
    "declare": (
        "labeler.cli.declare:declare",
        "Validate the declaration ([declaration] in the config) and put it in the labeler account's repo.",
    ),
    "did": ("labeler.cli.did:did", "The labeler's DID and its document."),
    "doctor": (
        "labeler.cli.doctor:doctor",
        "Resolve our DID as an AppView would and check key, endpoint, stream, declaration and label values; and "
        "that no child-safety match is labelled descriptively in public, and the takedown PDS accepts our admin "
        "password.",
    ),
    "entries": ("labeler.cli.entries:entries", "Bank entries that are disabled or review-only."),
    "exchange": (
        "labeler.cli.exchanges:exchange",
        "Hash exchanges that fill a bank by themselves.",
    ),
    "explain": ("labeler.cli.explain:explain", "Explain the labels on URI (an at:// URI or a DID)."),
    "ingest": (
        "labeler.cli.sources:ingest",
        "Queue image jobs from LABELER_FIREHOSE_URL and/or LABELER_JETSTREAM_URL until stopped.",
    ),
    "init": ("labeler.cli.init:init", "Write labeler.toml, generate the label key, and print the next steps."),
    "keys": ("labeler.cli.keys:keys", "Label signing keys."),
    "label": ("labeler.cli.labels:label", "Labels."),
    "moderators": ("labeler.cli.moderators:moderators", "Console moderators."),
    "reports": ("labeler.cli.reports:reports", "Reports received through createReport, and the moderation queue."),
    "review": ("labeler.cli.review:review", "Review queue."),
    "serve": ("labeler.cli.serve:serve", "Serve queryLabels, subscribeLabels, emitEvent and the DID document."),
    "worker": (
        "labeler.cli.worker:worker",
        "Process image jobs until stopped (SIGINT/SIGTERM finish the jobs in hand first).",
    ),
}


class LazyGroup(click.Group):
    """Click's documented pattern for lazily loaded subcommands: the group knows names, not modules; `--help` lists
    them from `COMMANDS` without importing any."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = COMMANDS[cmd_name][0].split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        width = formatter.width - 6 - max(len(name) for name in self.list_commands(ctx))
        commands = {**self.commands, **{name: click.Command(name, help=line) for name, (_, line) in COMMANDS.items()}}
        rows = [(name, commands[name].get_short_help_str(width)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="atproto-hma-labeler")
def cli() -> None:
    """An AT Protocol labeler for known-harmful images. Settings come from LABELER_* variables or labeler.toml."""


def main() -> None:
    cli()
