"""Entry point of one worker process under `bastion run --workers N` (started by Supervisor)."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from bastion.config.loader import load_config
from bastion.errors import ConfigError
from bastion.gateway.server import run_worker
from bastion.ops.logging import LOG


def main() -> int:
    # until the loop's handler is in place, a reload signal must not kill the worker
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
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
