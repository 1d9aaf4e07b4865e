"""ops.logging.redact_query: secret query parameters never reach a log, whatever their spelling."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bastion.ops.logging import SECRET_PARAMS, redact_query


@pytest.mark.parametrize("name", sorted(SECRET_PARAMS))
@pytest.mark.parametrize(
    "spell",
    [
        str.lower,
        str.upper,
        str.title,
        lambda n: n.replace("_", "%5F"),  # decoded to the name by the upstream
        lambda n: n.replace("k", "\u212a"),  # KELVIN SIGN: lower() makes it "k"
        lambda n: f"+{n}+",  # a form's spaces around the name
    ],
)
def test_every_spelling_of_a_secret_name_is_redacted(
    name: str, spell: Callable[[str], str]
) -> None:
    spelled = spell(name)
    assert redact_query(f"a=1&{spelled}=s3cret&b=2") == f"a=1&{spelled}=REDACTED&b=2"


@pytest.mark.parametrize(
    "query",
    ["", "x=1", "page=2&sort=name", "codex", "encode=1&passwords=2", "a=client_secret", "q=%41"],
)
def test_other_queries_are_kept_as_they_are(query: str) -> None:
    assert redact_query(query) == query
