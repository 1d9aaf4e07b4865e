"""Which build of the data path runs: the mypyc-compiled one if current, else the source.

`scripts/build_hot_path.py` compiles MODULES with mypyc into C extensions beside their `.py`
files (bench/PROFILE.md: it halves the Python time of a proxied request). The source stays the
reference: the same files, type-checked by mypy, run either way. An extension older than its
source would run code that is no longer there, so then, or when BASTION_PURE_PYTHON=1, or when a
part of the build is missing, every module of the group is imported from its source. All or
none: compiled modules call each other directly, past the import system.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from importlib.abc import MetaPathFinder
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

#: the gateway modules a request walks through (PROFILE.md), compiled as one group
MODULES = ("connection", "context", "exchange", "forwarding", "pipeline", "upstream")
#: the module name of the group's shared library (mypycify's group_name)
GROUP = "bastion.gateway._hot_path"
PACKAGE = "bastion.gateway"
FOLDER = Path(__file__).resolve().parent
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]  # this interpreter's, e.g. .cpython-311-…so

COMPILED = "compiled"
SOURCE = "source"


def extension_paths() -> list[Path]:
    """The files a complete build consists of: one extension per module, and the group's."""
    paths = [FOLDER / f"{name}{SUFFIX}" for name in MODULES]
    return [*paths, FOLDER / f"{GROUP.rsplit('.', 1)[1]}__mypyc{SUFFIX}"]


def stale_reason() -> str | None:
    """Why the compiled build cannot be used (None: it can)."""
    if os.environ.get("BASTION_PURE_PYTHON") == "1":
        return "BASTION_PURE_PYTHON=1"
    built = [path for path in extension_paths() if path.exists()]
    if not built:
        return "not built (scripts/build_hot_path.py)"
    if len(built) < len(MODULES) + 1:
        return "the build is incomplete"
    oldest = min(path.stat().st_mtime for path in built)
    for name in MODULES:
        if (FOLDER / f"{name}.py").stat().st_mtime > oldest:
            return f"{name}.py changed since the build"
    return None


class _SourceFinder(MetaPathFinder):
    """Imports the hot-path modules from their `.py` files, past their extensions."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or name not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, FOLDER / f"{name}.py")


def _select() -> tuple[str, str | None]:
    reason = stale_reason()
    if reason is None:
        return COMPILED, None
    sys.meta_path.insert(0, _SourceFinder())
    return SOURCE, reason


#: "compiled" or "source", decided once when bastion.gateway is first imported
MODE, WHY_SOURCE = _select()
