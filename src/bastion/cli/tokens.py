"""`bastion tokens revoke`: revoke issued access tokens by `jti`, on every node (SPEC §11)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bastion.cli.run import CONFIG_OPTION
from bastion.cli.store_command import load_or_exit, run_or_exit


@click.group()
def tokens() -> None:
    """Access tokens issued by the oauth plugin."""


@tokens.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("jtis", nargs=-1, required=True, metavar="JTI...")
def revoke(config_path: Path, as_json: bool, jtis: tuple[str, ...]) -> None:
    """Revoke tokens by their `jti` claim; running gateways refuse them within a second."""
    from bastion.plugins.oauth.revocation import revoke_under

    config = load_or_exit(config_path)
    bad = [jti for jti in jtis if not jti.strip() or len(jti) > 256]
    if bad:
        click.echo(f"not a jti: {bad[0]!r}", err=True)
        sys.exit(2)
    count = run_or_exit(config, lambda: revoke_under(config, list(jtis)))
    if as_json:
        click.echo(json.dumps({"revoked": list(jtis), "count": count}))
    else:
        click.echo(f"revoked {count} token(s)")
