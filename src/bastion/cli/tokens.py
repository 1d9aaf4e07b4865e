"""`bastion tokens revoke`: revoke issued access tokens by `jti`, on every node (SPEC §11)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from bastion.cli.run import CONFIG_OPTION
from bastion.config.loader import load_config
from bastion.errors import ConfigError
from bastion.store.base import StoreUnavailable
from bastion.store.url import redacted


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

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)
    bad = [jti for jti in jtis if not jti.strip() or len(jti) > 256]
    if bad:
        click.echo(f"not a jti: {bad[0]!r}", err=True)
        sys.exit(2)
    try:
        count = asyncio.run(revoke_under(config, list(jtis)))
    except ValueError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except StoreUnavailable as exc:
        click.echo(f"store {redacted(config.store)}: unreachable: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"revoked": list(jtis), "count": count}))
    else:
        click.echo(f"revoked {count} token(s)")
