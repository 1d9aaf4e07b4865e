"""`bastion store check`: which store the config names, its version and a round-trip time."""

from __future__ import annotations

import json
from pathlib import Path

import click

from bastion.cli.run import CONFIG_OPTION
from bastion.cli.store_command import load_or_exit, with_store
from bastion.store.base import Store
from bastion.store.url import redacted


@click.group()
def store() -> None:
    """The shared store (SQLite or Redis)."""


@store.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(config_path: Path, as_json: bool) -> None:
    """Connect to the config's store and time a round trip; exit 1 when it is unreachable."""
    config = load_or_exit(config_path)
    url = config.store

    async def probe(store: Store) -> tuple[str, str, float]:
        version, seconds = await store.check()
        return store.backend, version, seconds

    backend, version, seconds = with_store(config, probe)
    result = {
        "store": redacted(url), "backend": backend, "version": version,
        "round_trip_ms": round(seconds * 1000, 3),
    }  # fmt: skip
    if as_json:
        click.echo(json.dumps(result))
    else:
        for key, value in result.items():
            click.echo(f"{key}: {value}")
