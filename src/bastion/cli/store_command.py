"""What every command that works on the config's store shares: load the config, run against the
store, and turn a user error into a one-line message and exit 1 (SPEC §1: never a traceback)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from bastion.config.loader import load_config
from bastion.config.model import Config
from bastion.errors import ConfigError
from bastion.store.base import Store, StoreUnavailable
from bastion.store.url import redacted

T = TypeVar("T")


def load_or_exit(config_path: Path) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        click.echo(exc.render(), err=True)
        sys.exit(1)


def fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def run_or_exit(config: Config, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work`; ValueError (a request the config cannot serve) and an unreachable store
    exit 1 with their one-line reason."""
    try:
        return asyncio.run(_call(work))
    except ValueError as exc:
        fail(str(exc))
    except (StoreUnavailable, ConfigError) as exc:
        fail(f"store {redacted(config.store)}: unreachable: {exc}")
    raise AssertionError("unreachable")  # fail() exits


async def _call(work: Callable[[], Awaitable[T]]) -> T:
    return await work()


def with_store(config: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    """run_or_exit with the config's store opened for `work`, and closed after it."""
    from bastion.store.factory import open_store

    async def run() -> T:
        store = await open_store(config.store)
        try:
            return await work(store)
        finally:
            await store.aclose()

    return run_or_exit(config, run)
