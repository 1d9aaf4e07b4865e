"""The exception tree every Bastion module raises from.

BastionError
├── ConfigError        a config file or option is invalid; carries every problem with its path
├── UpstreamError      an upstream could not be reached or did not answer in time
└── RequestBodyError   a plugin could not read the request body
    ├── BodyTooLarge   it passed the plugin's limit (413)
    └── ClientGone     the client left or timed out before sending it all
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


class RequestBodyError(BastionError):
    """A plugin's read of the request body failed; the pipeline answers (or stops) for it."""


class BodyTooLarge(RequestBodyError):
    """The request body is larger than the plugin reading it accepts."""


class ClientGone(RequestBodyError):
    """The client closed the connection or timed out before its body was complete."""
