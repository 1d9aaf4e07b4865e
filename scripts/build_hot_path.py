"""Compile the gateway's hot-path modules with mypyc, beside their sources (gateway/hot_path.py).

    .venv/bin/python scripts/build_hot_path.py            # build (about 40 s on 2 cores)
    .venv/bin/python scripts/build_hot_path.py --if-stale # only when a source changed since
    .venv/bin/python scripts/build_hot_path.py --clean    # remove the build: run the source

A failed build (no C compiler, say) leaves the source running, and says so; it is not an error
for the gateway, only slower (bench/PROFILE.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

# run from the project, whatever the current folder: mypy reads pyproject.toml's settings
SETUP = """
from setuptools import setup
from mypyc.build import mypycify
setup(
    name="bastion-hot-path",
    package_dir={"": "src"},
    ext_modules=mypycify(%(paths)r, opt_level="3", group_name=%(group)r),
)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--if-stale", action="store_true", help="build only when out of date")
    parser.add_argument("--clean", action="store_true", help="remove the compiled build")
    args = parser.parse_args()
    os.environ.pop("BASTION_PURE_PYTHON", None)  # the build's own freshness, not the override
    sys.path.insert(0, str(SRC))
    from bastion.gateway import hot_path

    if args.clean:
        for path in hot_path.extension_paths():
            path.unlink(missing_ok=True)
        return 0
    reason = hot_path.stale_reason()
    if args.if_stale and reason is None:
        return 0
    paths = [str(hot_path.source_path(module).relative_to(ROOT)) for module in hot_path.MODULES]
    print(f"compiling the hot path with mypyc ({reason or 'rebuild'}) ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bastion-mypyc-") as temp:
        setup = Path(temp) / "setup.py"
        setup.write_text(SETUP % {"paths": paths, "group": hot_path.GROUP})
        command = [
            sys.executable, str(setup), "build_ext", "--inplace",
            "--build-temp", str(Path(temp) / "obj"),
        ]  # fmt: skip
        env = {**os.environ, "MYPYC_OPT_LEVEL": "3"}
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        shutil.rmtree(ROOT / "build", ignore_errors=True)  # mypyc's generated C
    if done.returncode == 0:
        # a build that compiles but cannot be imported would stop every command: try it first
        modules = ", ".join(f"bastion.{module}" for module in hot_path.MODULES)
        check = "from bastion.gateway.hot_path import MODE\nassert MODE == 'compiled'"
        code = f"import {modules}\n{check}"
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
        )
    if done.returncode != 0:
        for path in hot_path.extension_paths():
            path.unlink(missing_ok=True)  # never a half or broken build
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        print(f"{tail}\nnote: the hot path was not compiled; the source runs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
