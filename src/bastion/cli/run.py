"""`bastion run` and `bastion validate`."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from bastion.config.loader import load_config
from bastion.config.model import Config
from bastion.errors import ConfigError

CONFIG_OPTION = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The YAML config file.",
)


def check_config(path: Path) -> Config:
    """Load and fully compile FILE (plugins built too), or print every problem and exit 1."""
    from bastion.gateway.runtime import build_runtime
    from bastion.gateway.server import tls_context

    try:
        config = load_config(path)

        async def compile_once() -> None:
            runtime = await build_runtime(config, asyncio.get_running_loop())
            await runtime.aclose()

        asyncio.run(compile_once())
        tls_context(config)
    except ConfigError as exc:
        if len(exc.problems) == 1 and not exc.problems[0][0]:
            click.echo(exc.problems[0][1], err=True)  # the file itself (missing, not YAML, ...)
        else:
            click.echo(f"{path}: invalid configuration", err=True)
            for field, message in exc.problems:
                click.echo(f"  {field}: {message}" if field else f"  {message}", err=True)
        sys.exit(1)
    return config


@click.command()
@CONFIG_OPTION
def validate(config_path: Path) -> None:
    """Check a config file: every error with its field path; exit 1 on error."""
    config = check_config(config_path)
    click.echo(
        f"{config_path}: valid ({len(config.services)} services, {len(config.routes)} routes)"
    )


@click.command()
@CONFIG_OPTION
@click.option(
    "--workers",
    "-w",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes sharing the port (SO_REUSEPORT).",
)
def run(config_path: Path, workers: int) -> None:
    """Serve the gateway until SIGTERM or SIGINT; SIGHUP reloads the file."""
    config = check_config(config_path)
    path = str(config_path.resolve())
    if workers == 1:
        # become the serving process (same pid, so signals reach it) without this CLI loaded
        sys.stdout.flush()
        sys.stderr.flush()
        module = "bastion.gateway.worker_main"
        os.execv(sys.executable, [sys.executable, "-m", module, "--config", path, "--single"])
    from bastion.gateway.supervisor import Supervisor

    sys.exit(Supervisor(Path(path), config, workers).run())
