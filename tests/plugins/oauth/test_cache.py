"""VerifiedCache: bounded, oldest out first, never answers past exp + skew, cleared whole."""

from __future__ import annotations

import pytest

from bastion.plugins.oauth.cache import MAX_ENTRIES, VerifiedCache
from bastion.plugins.oauth.tokens import VerifiedToken

NOW = 1_700_000_000


def entry(exp: int = NOW + 100, name: str = "consumer1") -> VerifiedToken:
    return VerifiedToken(name, "default", frozenset(), exp, f"jti-{name}-{exp}")


def test_get_returns_what_was_put() -> None:
    cache = VerifiedCache(skew=60)
    verified = entry()
    cache.put("t1", verified)
    assert cache.get("t1", NOW) is verified
    assert cache.get("t2", NOW) is None


@pytest.mark.parametrize(
    ("skew", "now", "hit"),
    [
        (60, NOW + 100, True),
        (60, NOW + 160, True),  # exp + skew: still valid, as the codec says
        (60, NOW + 160.001, False),
        (0, NOW + 100, True),
        (0, NOW + 100.5, False),
    ],
)
def test_never_answers_past_exp_plus_skew(skew: int, now: float, hit: bool) -> None:
    cache = VerifiedCache(skew=skew)
    cache.put("t", entry(exp=NOW + 100))
    assert (cache.get("t", now) is not None) is hit


def test_an_expired_entry_is_dropped() -> None:
    cache = VerifiedCache(skew=0)
    cache.put("t", entry(exp=NOW))
    assert cache.get("t", NOW + 1) is None
    assert "t" not in cache.entries
    assert cache.get("t", NOW) is None  # gone for good, even if the clock went back


@pytest.mark.parametrize("limit", [1, 2, 8, 16, 100])
def test_bounded_and_evicts_the_oldest(limit: int) -> None:
    cache = VerifiedCache(skew=60, limit=limit)
    for i in range(limit * 3):
        cache.put(f"t{i}", entry(name=f"c{i}"))
        assert len(cache.entries) <= limit
    newest = f"t{limit * 3 - 1}"
    assert cache.get(newest, NOW) is not None
    assert cache.get("t0", NOW) is None
    kept = [int(k[1:]) for k in cache.entries]
    assert kept == sorted(kept)  # only the newest survive, in order
    assert min(kept) > limit * 3 - 1 - limit


def test_eviction_drops_the_oldest_first() -> None:
    cache = VerifiedCache(skew=60, limit=8)
    for i in range(8):
        cache.put(f"t{i}", entry(name=f"c{i}"))
    cache.put("new", entry(name="new"))
    assert "t0" not in cache.entries
    assert all(f"t{i}" in cache.entries for i in range(1, 8))
    assert "new" in cache.entries


def test_default_limit() -> None:
    assert VerifiedCache(skew=60).limit == MAX_ENTRIES


def test_clear() -> None:
    cache = VerifiedCache(skew=60)
    for i in range(5):
        cache.put(f"t{i}", entry(name=f"c{i}"))
    cache.clear()
    assert cache.entries == {}
    assert cache.get("t0", NOW) is None
    cache.put("t0", entry())
    assert cache.get("t0", NOW) is not None
