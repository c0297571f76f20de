"""`labeler` command line: one click group, one module per command group. Commands parse, call, print."""

from __future__ import annotations

import click

from labeler.cli.db import db
from labeler.cli.keys import keys
from labeler.cli.labels import label
from labeler.cli.serve import serve


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="atproto-hma-labeler")
def cli() -> None:
    """An AT Protocol labeler for known-harmful images. Settings come from LABELER_* variables or labeler.toml."""


cli.add_command(serve)
cli.add_command(db)
cli.add_command(keys)
cli.add_command(label)


def main() -> None:
    cli()
