"""The exception tree every Bastion module raises from.

BastionError
├── ConfigError        a config file or option is invalid; carries every problem with its path
└── UpstreamError      an upstream could not be reached or did not answer in time
"""

from __future__ import annotations


class BastionError(Exception):
    """Base of every error Bastion raises on purpose."""


class ConfigError(BastionError):
    """An invalid configuration: `problems` lists `(field path, message)` pairs, all at once."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(
            f"{path}: {message}" if path else message for path, message in self.problems
        )


class UpstreamError(BastionError):
    """An upstream request failed before its response head arrived."""
