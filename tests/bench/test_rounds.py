"""bench.rotated: the order of the configs in each round (README.md, Rounds)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import bench  # noqa: E402

TARGETS = ["nginx-proxy", "bastion-1w", "bastion-oauth-valid"]


def names(scenarios: tuple[bench.Scenario, ...], round_index: int) -> list[str]:
    return [scenario.name for scenario in bench.rotated(scenarios, round_index)]


@pytest.mark.parametrize("round_index", range(6))
def test_every_config_runs_once_a_round_and_the_targets_side_by_side(round_index: int) -> None:
    order = names(bench.SCENARIOS, round_index)
    assert sorted(order) == sorted(s.name for s in bench.SCENARIOS)
    start = min(order.index(name) for name in TARGETS)
    block = order[start : start + len(TARGETS)]
    assert block == (TARGETS if round_index % 2 == 0 else TARGETS[::-1])


def test_each_round_starts_one_unit_later() -> None:
    firsts = [names(bench.SCENARIOS, r)[0] for r in range(4)]
    assert firsts == ["nginx-direct", "bastion-oauth-valid", "bastion-1w-log", "bastion-1w-source"]


def test_a_subset_rotates_each_config_alone_when_no_targets_pair_up() -> None:
    subset = tuple(s for s in bench.SCENARIOS if s.name in ("bastion-1w", "bastion-1w-log"))
    assert [names(subset, r) for r in range(3)] == [
        ["bastion-1w", "bastion-1w-log"],
        ["bastion-1w-log", "bastion-1w"],
        ["bastion-1w", "bastion-1w-log"],
    ]
