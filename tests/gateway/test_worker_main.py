"""gateway/worker_main.py: the arguments `bastion run` and the supervisor start a worker with."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.gateway.worker_main import parse_args


@pytest.mark.parametrize(
    ("argv", "parsed"),
    [
        (["--config", "a.yaml"], (Path("a.yaml"), None, False)),
        (["--config=a.yaml", "--single"], (Path("a.yaml"), None, True)),
        (
            ["--single", "--metrics-file", "m.json", "--config", "a.yaml"],
            (Path("a.yaml"), Path("m.json"), True),
        ),
        (["--config", "a.yaml", "--config", "b.yaml"], (Path("b.yaml"), None, False)),  # the last
    ],
)
def test_the_arguments_the_worker_is_started_with(
    argv: list[str], parsed: tuple[Path, Path | None, bool]
) -> None:
    assert parse_args(argv) == parsed


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        ([], "--config is required"),
        (["--single"], "--config is required"),
        (["--config"], "--config needs a value"),
        (["--config="], "--config needs a value"),
        (["--config", "a.yaml", "--metrics-file"], "--metrics-file needs a value"),
        (["--config", "a.yaml", "--workers", "2"], "unrecognized argument: --workers"),
        (["a.yaml"], "unrecognized argument: a.yaml"),
    ],
)
def test_anything_else_exits_2_with_the_usage_and_the_reason(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: bastion-worker --config PATH") and f"error: {error}\n" in err
