"""`bastion keys list / rotate`: the oauth plugin's gateway-held signing keys (SPEC §11)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from bastion.cli.run import CONFIG_OPTION
from bastion.cli.store_command import fail, load_or_exit, with_store
from bastion.config.model import Config
from bastion.store.base import Store

T = TypeVar("T")


@click.group()
def keys() -> None:
    """Signing keys of tokens issued with `plugins.oauth.signing`."""


def _signing_algs(config: Config) -> list[str]:
    from bastion.plugins.oauth.schema import scopes_of

    return sorted({s.signing.alg for s in scopes_of(config) if s.signing is not None})


def _with_store(config_path: Path, work: Callable[[Config, list[str], Store], Awaitable[T]]) -> T:
    config = load_or_exit(config_path)
    algs = _signing_algs(config)
    if not algs:
        fail("the config signs no tokens with gateway keys (plugins.oauth.signing)")
    return with_store(config, lambda store: work(config, algs, store))


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stamp))


@keys.command("list")
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_keys(config_path: Path, as_json: bool) -> None:
    """The keys of each algorithm the config signs with: the current one and those retiring."""
    from bastion.plugins.oauth.keys import NAMESPACE, decode_ring

    async def work(config: Config, algs: list[str], store: Store) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        for alg in algs:
            data = await store.get(NAMESPACE, alg)
            for key in decode_ring(data) if data is not None else []:
                rows.append({
                    "kid": key.kid, "alg": key.alg, "created": _when(key.created),
                    "status": "current" if key.retired is None else "verifying only",
                    "retired": _when(key.retired) if key.retired is not None else None,
                })  # fmt: skip
        return rows

    rows = _with_store(config_path, work)
    if as_json:
        click.echo(json.dumps(rows))
    elif not rows:
        click.echo("no keys yet: the first gateway that signs a token creates them")
    else:
        for row in rows:
            click.echo(f"{row['kid']}  {row['alg']:<6} {row['created']}  {row['status']}")


@keys.command()
@CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the new keys as JSON.")
def rotate(config_path: Path, as_json: bool) -> None:
    """Make a new signing key per algorithm; old keys verify until their tokens expire.
    Running gateways sign with the new key within a second, without a restart."""
    from bastion.plugins.oauth.keys import rotate as rotate_ring
    from bastion.plugins.oauth.revocation import revocation_ttl

    async def work(config: Config, algs: list[str], store: Store) -> list[dict[str, str]]:
        lifetime = revocation_ttl(config)  # the longest a token may be accepted
        fresh = [await rotate_ring(store, alg, lifetime) for alg in algs]
        return [{"kid": key.kid, "alg": key.alg} for key in fresh]

    rows = _with_store(config_path, work)
    if as_json:
        click.echo(json.dumps(rows))
    else:
        for row in rows:
            click.echo(f"new {row['alg']} signing key {row['kid']}")
