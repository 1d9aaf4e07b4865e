"""No pydantic plugin discovery in Bastion's processes unless asked for (a worker's memory).

pydantic looks for plugins (the `pydantic` entry-point group) through `importlib.metadata`, whose
import alone (email, zipfile, csv, tempfile, ... ) is ~2 MB of every worker's memory
(bench/PROFILE.md). Bastion's config models are its own and need no plugin. When
PYDANTIC_DISABLE_PLUGINS is unset, the loader module is replaced, before pydantic is imported,
by one whose `get_plugins()` returns what pydantic's returns with PYDANTIC_DISABLE_PLUGINS=1: no
plugin. Setting the variable to any value (empty: every plugin) leaves pydantic's own loader.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

LOADER = "pydantic.plugin._loader"  # imported by pydantic.plugin._schema_validator when needed


def _no_plugins() -> Iterable[Any]:
    return ()


def skip_discovery() -> None:
    """Install the plugin-less loader unless PYDANTIC_DISABLE_PLUGINS is set or a loader (either
    one) is already imported."""
    if "PYDANTIC_DISABLE_PLUGINS" not in os.environ and LOADER not in sys.modules:
        sys.modules[LOADER] = _NoPluginLoader(LOADER)


class _NoPluginLoader(ModuleType):
    """Stands for pydantic.plugin._loader: the one name pydantic imports from it."""

    def __init__(self, name: str) -> None:
        super().__init__(name, __doc__)
        self.get_plugins = _no_plugins
