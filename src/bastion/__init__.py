"""Bastion: an authentication-first API gateway."""

# decides, before any bastion module is imported, whether the hot-path modules (some outside
# bastion.gateway: ops.metrics, ops.logging) load compiled or from their source
from bastion.gateway import hot_path as hot_path

# before pydantic is first imported: no plugin discovery (importlib.metadata, ~2 MB a process)
from bastion.ops.pydantic_plugins import skip_discovery

skip_discovery()

__version__ = "0.1.0"
