"""Entry point of a serving process: a worker under `bastion run --workers N` (started by the
Supervisor), or with `--single` the whole gateway of `bastion run` (the command execs into it once
the config is valid, so a serving process carries no command-line framework)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import signal
import sys
from pathlib import Path

from bastion.config.loader import load_config
from bastion.errors import ConfigError
from bastion.gateway.server import run_worker
from bastion.ops.logging import LOG

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies (even by SIGKILL), so no orphan keeps
    serving the port with an old config. The worker also watches its parent pid (server.py)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def main() -> int:
    # until the loop's handler is in place, a reload signal must not kill the worker
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="bastion-worker")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--metrics-file", type=Path)
    parser.add_argument("--single", action="store_true", help="the whole gateway, admin API too")
    args = parser.parse_args()
    if not args.single:
        _die_with_parent()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        LOG.error("invalid config", problems=[f"{p}: {m}" if p else m for p, m in exc.problems])
        return 1
    if args.single:
        return run_worker(args.config, config, serve_admin=True, reuse_port=False)
    return run_worker(
        args.config, config, serve_admin=False, reuse_port=True, metrics_file=args.metrics_file
    )


if __name__ == "__main__":
    sys.exit(main())
