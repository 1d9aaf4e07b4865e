"""Bastion: an authentication-first API gateway."""

__version__ = "0.1.0"
