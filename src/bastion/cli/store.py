"""`bastion store check`: which store the config names, its version and a round-trip time."""

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
def store() -> None:
    """The shared store (SQLite or Redis)."""


@store.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(config_path: Path, as_json: bool) -> None:
    """Connect to the config's store and time a round trip; exit 1 when it is unreachable."""
    from bastion.store.factory import open_store

    try:
        url = load_config(config_path).store
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)

    async def probe() -> tuple[str, str, float]:
        store = await open_store(url)
        try:
            version, seconds = await store.check()
            return store.backend, version, seconds
        finally:
            await store.aclose()

    try:
        backend, version, seconds = asyncio.run(probe())
    except (StoreUnavailable, ConfigError) as exc:
        click.echo(f"store {redacted(url)}: unreachable: {exc}", err=True)
        sys.exit(1)
    result = {
        "store": redacted(url), "backend": backend, "version": version,
        "round_trip_ms": round(seconds * 1000, 3),
    }  # fmt: skip
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key}: {value}")
