"""Read the YAML file, interpolate `${ENV}`, validate into a Config with every error at once."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bastion.config.errors import format_path, problems_from, suggest
from bastion.config.fields import check_domain_pattern
from bastion.config.model import Config
from bastion.errors import ConfigError

# ${NAME} or ${NAME:-default}; $${ is a literal "${"
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<:` merge keys: explicit keys may override what they bring
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "a mapping key must be a plain value, not a list or mapping",
                key_node.start_mark,
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    loader.flatten_mapping(node)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _interpolate(
    value: Any, env: Mapping[str, str], path: list[str | int], problems: list[tuple[str, str]]
) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if default is not None and not value:
                return default  # ":-" as in sh: unset or empty
            if value is not None:
                return value
            problems.append((format_path(path), f"environment variable {name} is not set"))
            return ""

        return _ENV_REF.sub(replace, value) if "$" in value else value
    if isinstance(value, dict):
        return {k: _interpolate(v, env, [*path, str(k)], problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env, [*path, i], problems) for i, v in enumerate(value)]
    return value


def parse_yaml(text: str, source: str = "<config>") -> dict[str, Any]:
    """YAML text → a mapping, or a ConfigError that names the line."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([("", f"{where}: invalid YAML: {problem}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([("", f"{source}: the top level must be a mapping of keys")])
    return data


def load_config_text(
    text: str, env: Mapping[str, str] | None = None, source: str = "<config>"
) -> Config:
    """Parse, interpolate and validate; raise ConfigError listing every problem."""
    raw = parse_yaml(text, source)
    problems: list[tuple[str, str]] = []
    data = _interpolate(raw, os.environ if env is None else env, [], problems)
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(problems_from(exc, Config, data=data))
    problems.extend(cross_checks(data))
    unset = {path for path, message in problems if message.startswith("environment variable")}
    if unset:  # "not set" says it all: drop what the empty value made the schema say there
        problems = [
            (path, message) for path, message in problems
            if path not in unset or message.startswith("environment variable")
        ]  # fmt: skip
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def read_config_text(path: str | Path) -> str:
    """The file's text, or a ConfigError that says why it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([("", f"cannot read {path}: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([("", f"{path} is not UTF-8 text")]) from None


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read FILE and validate it (see load_config_text)."""
    return load_config_text(read_config_text(path), env, str(path))


def _named(items: Any) -> list[tuple[int, dict[str, Any]]]:
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, dict)]


def _canonical_domain(domain: str) -> str:
    try:
        return check_domain_pattern(domain)
    except ValueError:
        return domain.lower()  # the schema reports it


def cross_checks(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Rules that span several fields: unique names, known services, shadowed routes, plugins.

    They read the raw data (defensively), so they report even when the schema has other errors.
    """
    from bastion.gateway.routing import RouteSpec, shadowed_routes
    from bastion.plugins.registry import check_plugins

    problems: list[tuple[str, str]] = []
    services: set[str] = set()
    for i, service in _named(data.get("services")):
        name = service.get("name")
        if isinstance(name, str):
            if name in services:
                problems.append((f"services[{i}].name", f"duplicate service name {name!r}"))
            services.add(name)
    routes: set[str] = set()
    specs: list[RouteSpec[int]] = []
    for i, route in _named(data.get("routes")):
        route_name, wanted = route.get("name"), route.get("service")
        if isinstance(route_name, str):
            if route_name in routes:
                problems.append((f"routes[{i}].name", f"duplicate route name {route_name!r}"))
            routes.add(route_name)
        if isinstance(wanted, str) and wanted not in services:
            hint = suggest(wanted, services)
            problems.append((f"routes[{i}].service", f"unknown service {wanted!r}{hint}"))
        domains, path = route.get("domains") or [], route.get("path", "/")
        if (
            isinstance(domains, list)
            and all(isinstance(d, str) for d in domains)
            and isinstance(path, str)
        ):
            specs.append(
                RouteSpec(
                    [_canonical_domain(d) for d in domains],
                    path,
                    str(route.get("path_type", "prefix")),
                    i,
                )
            )
    for first, later in shadowed_routes(specs):
        problems.append(
            (
                f"routes[{specs[later].value}]",
                f"same domains, path and path_type as routes[{specs[first].value}]: "
                "it could never match",
            )
        )
    problems.extend(check_plugins(data))
    return problems
