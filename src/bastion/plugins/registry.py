"""Config key → plugin class; validates `plugins:` sections into typed configs with field paths."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.config.errors import suggest
from bastion.plugins.base import Plugin
from bastion.plugins.headers.handler import HeadersPlugin

if TYPE_CHECKING:
    from bastion.config.model import Config

PLUGINS: dict[str, type[Plugin]] = {cls.NAME: cls for cls in (HeadersPlugin,)}


def plugin_class(name: str) -> type[Plugin] | None:
    return PLUGINS.get(name)


def unknown_plugin(name: str) -> str:
    return f"unknown plugin {name!r}{suggest(name, PLUGINS)}; known: {', '.join(sorted(PLUGINS))}"


def check_plugins(config: Config) -> list[tuple[str, str]]:
    """Every problem in the plugin sections of a config (instance, `_rules_`, routes' maps)."""
    from bastion.plugins.rules import resolve_rules

    try:
        resolve_rules(config)
    except RulesError as exc:
        return exc.problems
    return []


class RulesError(Exception):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
