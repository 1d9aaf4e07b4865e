"""Which build of the data path runs: the mypyc-compiled one if current, else the source.

`scripts/build_hot_path.py` compiles MODULES with mypyc into C extensions beside their `.py`
files (bench/PROFILE.md: it halves the Python time of a proxied request). The source stays the
reference: the same files, type-checked by mypy, run either way. An extension older than its
source would run code that is no longer there, so then, or when BASTION_PURE_PYTHON=1, or when a
part of the build is missing, every module of the group is imported from its source. All or
none: compiled modules call each other directly, past the import system.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec, SourceFileLoader
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

#: the modules a request walks through (PROFILE.md), compiled as one group; under `bastion`
MODULES = (
    "gateway.access_log", "gateway.clock", "gateway.connection", "gateway.context",
    "gateway.exchange", "gateway.forwarding", "gateway.pipeline", "gateway.request_head",
    "gateway.responses", "gateway.route", "gateway.routing", "gateway.runtime",
    "gateway.upstream", "ops.logging", "ops.metrics", "plugins.oauth.cache", "plugins.oauth.step",
    "plugins.step",
)  # fmt: skip
#: the module name of the group's shared library (mypycify's group_name)
GROUP = "bastion.gateway._hot_path"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # src/bastion
SUFFIX = EXTENSION_SUFFIXES[0]  # this interpreter's, e.g. .cpython-311-…so

COMPILED = "compiled"
SOURCE = "source"


def source_path(module: str) -> Path:
    return PACKAGE_ROOT.joinpath(*module.split(".")).with_suffix(".py")


def extension_paths() -> list[Path]:
    """The files a complete build consists of: one extension per module, and the group's."""
    paths = [source_path(module).with_suffix(SUFFIX) for module in MODULES]
    group = GROUP.removeprefix("bastion.") + "__mypyc"
    return [*paths, PACKAGE_ROOT.joinpath(*group.split(".")).with_suffix(SUFFIX)]


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
    for module in MODULES:
        if source_path(module).stat().st_mtime > oldest:
            return f"{module.replace('.', '/')}.py changed since the build"
    return None


class _SourceFinder:
    """A sys.meta_path finder: the hot-path modules from their `.py` files, past their extensions.
    (importlib.util and importlib.abc are not used: they import ~1 MB of modules a worker would
    not use otherwise.)"""

    _NAMES = frozenset(f"bastion.{module}" for module in MODULES)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self._NAMES:
            return None
        source = str(source_path(fullname.removeprefix("bastion.")))
        spec = ModuleSpec(fullname, SourceFileLoader(fullname, source), origin=source)
        spec.has_location = True  # __file__ and the cached bytecode, as a file import has
        return spec


def _select() -> tuple[str, str | None]:
    reason = stale_reason()
    if reason is None:
        return COMPILED, None
    sys.meta_path.insert(0, _SourceFinder())
    return SOURCE, reason


#: "compiled" or "source", decided once, when bastion is first imported (bastion/__init__.py)
MODE, WHY_SOURCE = _select()
