"""`labeler` command line: one click group, one module per command group. Commands parse, call, print."""

from __future__ import annotations

import click

from labeler.cli.actions import actions
from labeler.cli.banks import bank
from labeler.cli.db import db
from labeler.cli.declare import declare
from labeler.cli.did import did
from labeler.cli.doctor import doctor
from labeler.cli.entries import entries
from labeler.cli.explain import explain
from labeler.cli.init import init
from labeler.cli.keys import keys
from labeler.cli.labels import label
from labeler.cli.moderators import moderators
from labeler.cli.reports import reports
from labeler.cli.review import review
from labeler.cli.serve import serve
from labeler.cli.sources import ingest
from labeler.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="atproto-hma-labeler")
def cli() -> None:
    """An AT Protocol labeler for known-harmful images. Settings come from LABELER_* variables or labeler.toml."""


cli.add_command(init)
cli.add_command(serve)
cli.add_command(ingest)
cli.add_command(db)
cli.add_command(keys)
cli.add_command(did)
cli.add_command(declare)
cli.add_command(doctor)
cli.add_command(label)
cli.add_command(reports)
cli.add_command(worker)
cli.add_command(bank)
cli.add_command(review)
cli.add_command(explain)
cli.add_command(actions)
cli.add_command(entries)
cli.add_command(moderators)


def main() -> None:
    cli()
