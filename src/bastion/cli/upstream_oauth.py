"""`bastion upstream-oauth purge`: drop cached upstream tokens on every node (SPEC §11)."""

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


@click.group("upstream-oauth")
def upstream_oauth() -> None:
    """Tokens the upstream-oauth plugin fetched for upstreams."""


@upstream_oauth.command()
@CONFIG_OPTION
@click.option("--route", default=None, help="Only the tokens this route uses (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def purge(config_path: Path, route: str | None, as_json: bool) -> None:
    """Drop cached tokens; running gateways fetch new ones on their next request."""
    from bastion.plugins.upstream_oauth.purge import purge_under

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)
    try:
        count = asyncio.run(purge_under(config, route))
    except ValueError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    except StoreUnavailable as exc:
        click.echo(f"store {redacted(config.store)}: unreachable: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps({"route": route, "cache_keys": count}))
    else:
        click.echo(f"purged the tokens of {count} upstream-oauth config(s)")
