"""Entry point of a serving process: a worker under `bastion run --workers N` (started by the
Supervisor), or with `--single` the whole gateway of `bastion run` (the command execs into it once
the config is valid, so a serving process carries no command-line framework)."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
from pathlib import Path
from typing import NoReturn

from bastion.config.loader import load_config
from bastion.errors import ConfigError
from bastion.gateway.server import run_worker
from bastion.ops.logging import LOG

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_USAGE = "usage: bastion-worker --config PATH [--metrics-file PATH] [--single]"


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies (even by SIGKILL), so no orphan keeps
    serving the port with an old config. The worker also watches its parent pid (server.py)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def main() -> int:
    # until the loop's handler is in place, a reload signal must not kill the worker
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    config_path, metrics_file, single = parse_args(sys.argv[1:])
    if not single:
        _die_with_parent()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        LOG.error("invalid config", problems=[f"{p}: {m}" if p else m for p, m in exc.problems])
        return 1
    if single:  # the whole gateway, admin API too
        return run_worker(config_path, config, serve_admin=True, reuse_port=False)
    return run_worker(
        config_path, config, serve_admin=False, reuse_port=True, metrics_file=metrics_file
    )


def parse_args(argv: list[str]) -> tuple[Path, Path | None, bool]:
    """`--config PATH [--metrics-file PATH] [--single]` (or `--name=value`): (config, metrics
    file, single). `bastion run` and the supervisor start the worker with these and nothing else;
    argparse for three flags would be ~0.3 MB of every worker's memory (bench/PROFILE.md).
    Anything else exits 2 with the usage line and what was wrong."""
    values: dict[str, str] = {}
    single = False
    args = iter(argv)
    for arg in args:
        name, equals, value = arg.partition("=")
        if arg == "--single":
            single = True
        elif name in ("--config", "--metrics-file"):
            if not equals:
                value = next(args, "")
            if not value:
                _usage_error(f"{name} needs a value")
            values[name] = value
        else:
            _usage_error(f"unrecognized argument: {arg}")
    if "--config" not in values:
        _usage_error("--config is required")
    metrics = values.get("--metrics-file")
    return Path(values["--config"]), Path(metrics) if metrics else None, single


def _usage_error(message: str) -> NoReturn:
    print(f"{_USAGE}\nbastion-worker: error: {message}", file=sys.stderr)
    raise SystemExit(2)


if __name__ == "__main__":
    sys.exit(main())
