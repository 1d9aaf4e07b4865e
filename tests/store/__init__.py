"""Tests of the shared store: one contract suite (contract.py) run against every backend."""
