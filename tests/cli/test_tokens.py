"""`bastion tokens revoke`: revocations land in the config's store; user errors exit non-zero."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import yaml

from bastion.plugins.oauth.revocation import NAMESPACE, TOPIC
from bastion.store.sqlite import SqliteStore
from tests.e2e.procs import free_port

OAUTH = {"consumers": [{"name": "c1", "client_id": "id-1", "client_secret": "s" * 32}]}


def revoke(
    tmp_path: Path, config: dict[str, object], *args: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "bastion.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "bastion", "tokens", "revoke", "-c", str(path), *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip


def stored(db: Path, jtis: list[str]) -> tuple[list[bool], int]:
    async def read() -> tuple[list[bool], int]:
        store = SqliteStore(db)
        try:
            found = [await store.get(NAMESPACE, jti) is not None for jti in jtis]
            return found, await store.version(TOPIC)
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_revoke_writes_every_jti_and_bumps_the_topic_once(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    config = {"store": f"sqlite:///{db}", "plugins": {"oauth": OAUTH}}
    result = revoke(tmp_path, config, "--json", "jti-1", "jti-2")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"revoked": ["jti-1", "jti-2"], "count": 2}
    assert stored(db, ["jti-1", "jti-2", "jti-3"]) == ([True, True, False], 1)
    result = revoke(tmp_path, config, "jti-3")
    assert result.returncode == 0 and result.stdout.strip() == "revoked 1 token(s)"
    assert stored(db, ["jti-3"]) == ([True], 2)


def test_a_config_without_oauth_is_refused(tmp_path: Path) -> None:
    result = revoke(tmp_path, {"store": f"sqlite:///{tmp_path}/b.db"}, "jti-1")
    assert result.returncode == 1
    assert result.stderr.startswith("the config has no oauth plugin")


def test_an_unreachable_store_exits_1_with_the_password_hidden(tmp_path: Path) -> None:
    store = f"redis://:s3cretpass@127.0.0.1:{free_port()}/0"
    result = revoke(tmp_path, {"store": store, "plugins": {"oauth": OAUTH}}, "jti-1")
    assert result.returncode == 1
    assert "unreachable" in result.stderr
    assert "s3cretpass" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_usage_errors_say_what_is_wrong(tmp_path: Path) -> None:
    config = {"store": f"sqlite:///{tmp_path}/b.db", "plugins": {"oauth": OAUTH}}
    missing = revoke(tmp_path, config)
    assert missing.returncode == 2 and "Missing argument 'JTI...'" in missing.stderr
    blank = revoke(tmp_path, config, " ")
    assert blank.returncode == 2 and blank.stderr.startswith("not a jti")
    invalid = revoke(tmp_path, {"plugins": {"oauth": {"consumers": "x"}}}, "jti-1")
    assert invalid.returncode == 1 and "plugins.oauth.consumers" in invalid.stderr
