"""The shared store (SPEC §8): one async interface, an embedded SQLite and a Redis backend."""

from bastion.store.base import Store, StoreUnavailable

__all__ = ["Store", "StoreUnavailable"]
