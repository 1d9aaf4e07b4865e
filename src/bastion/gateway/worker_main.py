"""Entry point of one worker process under `bastion run --workers N` (started by Supervisor)."""

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
    _die_with_parent()
    parser = argparse.ArgumentParser(prog="bastion-worker")
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--metrics-file", type=Path)
    args = parser.parse_args()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        LOG.error("invalid config", problems=[f"{p}: {m}" if p else m for p, m in exc.problems])
        return 1
    return run_worker(
        args.config, config, serve_admin=False, reuse_port=True, metrics_file=args.metrics_file
    )


if __name__ == "__main__":
    sys.exit(main())
