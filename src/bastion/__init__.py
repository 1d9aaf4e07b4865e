"""Bastion: an authentication-first API gateway."""

# decides, before any bastion module is imported, whether the hot-path modules (some outside
# bastion.gateway: ops.metrics) load compiled or from their source
from bastion.gateway import hot_path as hot_path

__version__ = "0.1.0"
