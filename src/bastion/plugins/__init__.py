"""Plugins: the contract, the registry, Higress rule resolution, and one folder per plugin."""
