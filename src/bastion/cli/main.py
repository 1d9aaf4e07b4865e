"""`bastion`: the command group; user errors exit non-zero with a message, never a traceback."""

from __future__ import annotations

import sys

import click

from bastion import __version__
from bastion.cli.demo import demo
from bastion.cli.keys import keys
from bastion.cli.run import run, validate
from bastion.cli.store import store
from bastion.cli.tokens import tokens
from bastion.cli.upstream_oauth import upstream_oauth


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bastion")
def cli() -> None:
    """Bastion: an authentication-first API gateway."""


cli.add_command(run)
cli.add_command(validate)
cli.add_command(demo)
cli.add_command(store)
cli.add_command(tokens)
cli.add_command(keys)
cli.add_command(upstream_oauth)


def main() -> None:
    try:
        cli.main(prog_name="bastion", standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)
