"""`bastion upstream-oauth purge`: drop cached upstream tokens on every node (SPEC §11)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bastion.cli.run import CONFIG_OPTION
from bastion.cli.store_command import load_or_exit, run_or_exit


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

    config = load_or_exit(config_path)
    count = run_or_exit(config, lambda: purge_under(config, route))
    if as_json:
        click.echo(json.dumps({"route": route, "cache_keys": count}))
    else:
        click.echo(f"purged the tokens of {count} upstream-oauth config(s)")
