"""VerifiedCache: bounded, oldest out first, never answers past exp + skew, cleared whole."""

from __future__ import annotations

import pytest

from bastion.plugins.oauth.cache import MAX_ENTRIES, VerifiedCache, VerifiedToken

NOW = 1_700_000_000


def entry(exp: int = NOW + 100, name: str = "consumer1") -> VerifiedToken:
    return VerifiedToken(name, "default", frozenset(), exp, f"jti-{name}-{exp}")


def test_get_returns_what_was_put() -> None:
    cache = VerifiedCache(skew=60)
    verified = entry()
    cache.put(b"t1", verified)
    assert cache.get(b"t1", NOW) is verified
    assert cache.get(b"t2", NOW) is None


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
    cache.put(b"t", entry(exp=NOW + 100))
    assert (cache.get(b"t", now) is not None) is hit


def test_an_expired_entry_is_dropped() -> None:
    cache = VerifiedCache(skew=0)
    cache.put(b"t", entry(exp=NOW))
    assert cache.get(b"t", NOW + 1) is None
    assert b"t" not in cache.entries
    assert cache.get(b"t", NOW) is None  # gone for good, even if the clock went back


@pytest.mark.parametrize("limit", [1, 2, 8, 16, 100])
def test_bounded_and_evicts_the_oldest(limit: int) -> None:
    cache = VerifiedCache(skew=60, limit=limit)
    for i in range(limit * 3):
        cache.put(f"t{i}".encode(), entry(name=f"c{i}"))
        assert len(cache.entries) <= limit
    newest = f"t{limit * 3 - 1}".encode()
    assert cache.get(newest, NOW) is not None
    assert cache.get(b"t0", NOW) is None
    kept = [int(k[1:]) for k in cache.entries]
    assert kept == sorted(kept)  # only the newest survive, in order
    assert min(kept) > limit * 3 - 1 - limit


def test_eviction_drops_the_oldest_first() -> None:
    cache = VerifiedCache(skew=60, limit=8)
    for i in range(8):
        cache.put(f"t{i}".encode(), entry(name=f"c{i}"))
    cache.put(b"new", entry(name="new"))
    assert b"t0" not in cache.entries
    assert all(f"t{i}".encode() in cache.entries for i in range(1, 8))
    assert b"new" in cache.entries


def test_default_limit() -> None:
    assert VerifiedCache(skew=60).limit == MAX_ENTRIES


def test_clear() -> None:
    cache = VerifiedCache(skew=60)
    for i in range(5):
        cache.put(f"t{i}".encode(), entry(name=f"c{i}"))
    cache.clear()
    assert cache.entries == {}
    assert cache.get(b"t0", NOW) is None
    cache.put(b"t0", entry())
    assert cache.get(b"t0", NOW) is not None


def test_the_last_entry_found_answers_as_the_dict_would() -> None:
    """get() remembers the entry it found last; that memo never outlives the entry's rules."""
    cache = VerifiedCache(skew=0)
    first, second = entry(name="a"), entry(name="b")
    cache.put(b"token-a", first)
    cache.put(b"token-b", second)
    assert cache.get(b"token-a", NOW) is first
    assert cache.get(b"token-a", NOW) is first  # from the memo
    assert cache.get(b"token-b", NOW) is second  # same length, other bytes
    assert cache.get(b"token-", NOW) is None


def test_a_miss_is_not_remembered_past_a_put() -> None:
    cache = VerifiedCache(skew=0)
    assert cache.get(b"t", NOW) is None
    verified = entry()
    cache.put(b"t", verified)
    assert cache.get(b"t", NOW) is verified


def test_the_memo_expires_and_clears_with_the_cache() -> None:
    cache = VerifiedCache(skew=0)
    cache.put(b"t", entry(exp=NOW))
    assert cache.get(b"t", NOW) is not None
    assert cache.get(b"t", NOW + 1) is None  # past exp, though remembered
    assert b"t" not in cache.entries
    cache.put(b"t", entry(exp=NOW + 100))
    assert cache.get(b"t", NOW) is not None
    cache.clear()  # a revocation or a key rotation
    assert cache.get(b"t", NOW) is None


def test_an_evicted_entry_is_not_answered_from_the_memo() -> None:
    cache = VerifiedCache(skew=0, limit=1)
    cache.put(b"old", entry(name="old"))
    assert cache.get(b"old", NOW) is not None
    cache.put(b"new", entry(name="new"))
    assert cache.get(b"old", NOW) is None
    assert cache.get(b"new", NOW) is not None
