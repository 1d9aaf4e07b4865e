"""Every registered plugin satisfies the plugin contract (DESIGN.md "The plugin contract")."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from bastion.config.model import Model
from bastion.plugins.base import Plugin, PluginDeps, Step
from bastion.plugins.registry import PLUGINS, plugin_class, unknown_plugin
from bastion.store.sqlite import SqliteStore

# A minimal valid instance config for each plugin whose Config has required fields; plugins
# whose Config validates from {} need no entry.
SAMPLE_CONFIGS: dict[str, dict[str, Any]] = {
    "oauth": {"consumers": [{"name": "c1", "client_id": "id-1", "client_secret": "s" * 32}]},
    "upstream-oauth": {
        "oauth": {
            "token_endpoint": "https://idp.example/token",
            "client_id": "c",
            "client_secret": "s",
        }
    },
}

REGISTERED = [(name, plugin_class(name)) for name in sorted(PLUGINS)]
IDS = [name for name, _ in REGISTERED]


def build(cls: type[Plugin]) -> Plugin:
    try:
        config = cls.Config.model_validate(SAMPLE_CONFIGS.get(cls.NAME, {}))
    except ValidationError as exc:
        pytest.fail(f"add a minimal config for {cls.NAME!r} to SAMPLE_CONFIGS: {exc}")
    # a store that is never touched: SqliteStore opens its file on first use
    store = SqliteStore(Path(tempfile.mkdtemp()) / "store.db") if cls.USES_STORE else None
    return cls(config, PluginDeps(route_names=frozenset({"route-a"}), store=store))


def test_registry_is_not_empty() -> None:
    assert "headers" in PLUGINS


@pytest.mark.parametrize(("key", "cls"), REGISTERED, ids=IDS)
def test_plugin_declares_its_name_and_priority(key: str, cls: type[Plugin]) -> None:
    assert issubclass(cls, Plugin)
    name = cls.NAME
    assert isinstance(name, str) and name
    assert name == key  # the config key is the plugin's name
    assert name == name.strip().lower()
    assert isinstance(cls.PRIORITY, int) and not isinstance(cls.PRIORITY, bool)
    assert isinstance(cls.GLOBAL_AUTH, bool)


@pytest.mark.parametrize(("key", "cls"), REGISTERED, ids=IDS)
def test_plugin_config_and_rule_are_strict_models(key: str, cls: type[Plugin]) -> None:
    for model in (cls.Config, cls.Rule):
        assert isinstance(model, type) and issubclass(model, BaseModel)
        assert model.model_config.get("extra") == "forbid", f"{key}: {model.__name__}"


@pytest.mark.parametrize(("key", "cls"), REGISTERED, ids=IDS)
def test_plugin_config_refuses_unknown_keys(key: str, cls: type[Plugin]) -> None:
    with pytest.raises(ValidationError, match="extra_forbidden"):
        cls.Config.model_validate({**SAMPLE_CONFIGS.get(key, {}), "no_such_field_xyz": 1})


@pytest.mark.parametrize(("key", "cls"), REGISTERED, ids=IDS)
def test_auth_plugins_have_global_auth_in_their_instance_config(
    key: str, cls: type[Plugin]
) -> None:
    if cls.GLOBAL_AUTH:
        assert "global_auth" in cls.Config.model_fields
        assert "global_auth" not in cls.Rule.model_fields


@pytest.mark.parametrize(("key", "cls"), REGISTERED, ids=IDS)
def test_bind_returns_a_step_or_none(key: str, cls: type[Plugin]) -> None:
    plugin = build(cls)
    for rule in (plugin.config, *_sample_rules(cls)):
        step = plugin.bind(rule)
        assert step is None or isinstance(step, Step), f"{key}: bind({rule!r}) -> {step!r}"
    asyncio.run(plugin.aclose())


@pytest.mark.parametrize(("key", "cls"), REGISTERED, ids=IDS)
def test_aclose_is_a_coroutine_function(key: str, cls: type[Plugin]) -> None:
    assert inspect.iscoroutinefunction(cls.aclose)


@pytest.mark.parametrize(("key", "cls"), REGISTERED, ids=IDS)
def test_aclose_is_safe_after_a_failed_build(key: str, cls: type[Plugin]) -> None:
    # the worst case of a failed __init__: nothing was built at all
    half_built = cls.__new__(cls)
    asyncio.run(half_built.aclose())


@pytest.mark.parametrize(("key", "cls"), REGISTERED, ids=IDS)
def test_steps_override_at_least_one_hook(key: str, cls: type[Plugin]) -> None:
    plugin = build(cls)
    for rule in (plugin.config, *_sample_rules(cls)):
        step = plugin.bind(rule)
        if step is not None:
            assert step.handles_request or step.handles_response
    asyncio.run(plugin.aclose())


def _sample_rules(cls: type[Plugin]) -> list[Model]:
    try:
        return [cls.Rule.model_validate({})]
    except ValidationError:
        return []


def test_plugin_class_finds_registered_plugins_only() -> None:
    assert plugin_class("headers") is PLUGINS["headers"]
    assert plugin_class("nope") is None


def test_unknown_plugin_message_suggests_and_lists_the_known_names() -> None:
    assert unknown_plugin("header") == (
        f"unknown plugin 'header' (did you mean 'headers'?); known: {', '.join(sorted(PLUGINS))}"
    )
    assert "did you mean" not in unknown_plugin("zzzzzz")


def test_a_worker_loads_only_the_plugins_its_config_uses() -> None:
    # the registry imports a plugin when a config names it: a proxy-only worker stays small
    code = (
        "import asyncio, sys\n"
        "from bastion.config.loader import load_config_text\n"
        "from bastion.gateway.runtime import build_runtime\n"
        "config = load_config_text('''\n"
        "listen: 127.0.0.1:1\n"
        "services: [{name: s, url: 'http://127.0.0.1:2'}]\n"
        "routes: [{name: r, path: /, service: s}]\n"
        "plugins: {headers: {request: {set: {X-A: b}}}}\n"
        "''')\n"
        "asyncio.run(build_runtime(config, asyncio.new_event_loop()))\n"
        "print(sorted(m for m in sys.modules if m.startswith(('bastion.plugins.', 'joserfc'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = done.stdout.strip()
    assert "bastion.plugins.headers.handler" in loaded
    assert "bastion.plugins.oauth" not in loaded
    assert "bastion.plugins.upstream_oauth" not in loaded
    assert "joserfc" not in loaded
