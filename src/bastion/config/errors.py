"""Turn validation failures into `dotted.path[1].field: message` lines with "did you mean" hints."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError


def format_path(loc: Iterable[str | int]) -> str:
    """`("routes", 1, "path")` → `routes[1].path`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def suggest(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a close choice exists, else ``. (difflib is imported only
    here, for a config that fails: it would be 0.2 MB of every worker's memory.)"""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that owns the field at `loc` (to suggest names for an unknown key)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation) if get_origin(annotation) is not None else ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _clean_loc(loc: Sequence[str | int], data: Any) -> list[str | int]:
    """The loc without pydantic's union-branch tags (`str`, `list[str]`, `function-after[…]`).

    A part is kept when it is a real key or index in the input data; tags are not.
    """
    out: list[str | int] = []
    current = data
    last = len(loc) - 1
    for i, part in enumerate(loc):
        if isinstance(current, list):
            if isinstance(part, int) and 0 <= part < len(current):
                out.append(part)
                current = current[part]
            # else: a union tag under a list
        elif isinstance(current, dict):
            if part in current:
                out.append(part)
                current = current[part]
            elif i == last:
                out.append(part)  # a missing required field
            # else: a union tag under a mapping
        elif current is None and i == last:
            out.append(part)
        # else: a tag pydantic added below a scalar value ("[key]", "str", ...)
    return out


_TAG = re.compile(r"^(\[key\]|str|int|float|bool|none|(list|dict|set|tuple|function-\w+)\[.*\])$")


def _strip_tags(loc: Sequence[str | int]) -> list[str | int]:
    """Without the input at hand: drop what looks like a pydantic tag (best effort)."""
    return [p for p in loc if isinstance(p, int) or not _TAG.match(p)]


def problems_from(
    exc: ValidationError, model: type[BaseModel], prefix: Sequence[str | int] = (), data: Any = None
) -> list[tuple[str, str]]:
    """Every error of a pydantic ValidationError as (path, message), unknown keys with a hint."""
    found: list[tuple[list[str | int], str, str]] = []
    for error in exc.errors(include_url=False):
        loc = _clean_loc(error["loc"], data) if data is not None else _strip_tags(error["loc"])
        if error["type"] == "extra_forbidden":
            key = str(loc[-1])
            owner = _model_at(model, loc[:-1])
            hint = suggest(key, owner.model_fields) if owner else ""
            message = f"unknown key{hint}"
        elif error["type"] == "missing":
            message = "required"
        else:
            message = error["msg"].removeprefix("Value error, ")
        found.append((loc, error["type"], message))
    # a union reports every branch; where one branch says more than "wrong type", keep that one
    precise = {tuple(loc) for loc, kind, _ in found if not kind.endswith("_type")}
    problems: list[tuple[str, str]] = []
    for loc, kind, message in found:
        if kind.endswith("_type") and any(p[: len(loc)] == tuple(loc) for p in precise):
            continue
        item = (format_path([*prefix, *loc]), message)
        if item not in problems:
            problems.append(item)
    return problems
