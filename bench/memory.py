"""Where a worker's memory goes (issue 7's "RSS under 40 MB per worker"; bench/PROFILE.md).

Two views, printed as markdown:
1. A running worker of each plugin set (`bastion run --workers 1`, which execs into its one
   worker; the build) after a few requests that load what serving needs (a token issued and
   checked, an upstream token fetched): its RSS split by what is mapped: anonymous memory (Python
   objects, malloc), libpython, each extension and shared library. File-backed pages (code) are
   shared with every other process mapping the same file; the anonymous ones are the worker's own.
2. The RSS each group of imports adds in a fresh interpreter, in the order a worker imports them
   (a module shared by two groups counts in the first).

    .venv/bin/python bench/memory.py          # ~10 s; needs nothing beyond the venv
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from systems import (
    Server,
    fetch,
    issue_token,
    oauth_plugin,
    start_bastion,
    start_idp,
    start_pyupstream,
    upstream_oauth_plugin,
)

REQUESTS = 200  # per plugin set before the worker's maps are read
SETTLE = 1.0  # seconds between the last request and the reading
# Import groups in a worker's order: (label, modules). "bastion" imports pydantic's internals
# through the config models; the plugins' groups import what their handlers import at load.
GROUPS: list[tuple[str, list[str]]] = [
    ("asyncio (imports ssl: OpenSSL)", ["asyncio"]),
    ("uvloop, httptools", ["uvloop", "httptools"]),
    ("PyYAML, orjson", ["yaml", "orjson"]),
    ("pydantic, pydantic-core", ["pydantic", "pydantic.main"]),
    ("Bastion's config models and worker", ["bastion.config", "bastion.gateway.worker_main"]),
    ("the SQLite store (sqlite3)", ["bastion.store.sqlite"]),
    ("joserfc (imports cryptography)", ["joserfc.jws", "joserfc.jwk", "joserfc.errors"]),
    ("the oauth plugin's modules", ["bastion.plugins.oauth.handler"]),
    ("httpx (without its CLI: idp/httpx_module)", ["bastion.idp.httpx_module"]),
    ("an httpx.AsyncClient (its TLS context, the CA bundle)", []),
    ("the upstream-oauth plugin's modules", ["bastion.plugins.upstream_oauth.handler"]),
]
LEDGER = """
import importlib, json, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
rows = [("the interpreter", rss())]
for label, modules in json.loads(sys.argv[1]):
    for m in modules:
        importlib.import_module(m)
    if not modules:
        client = sys.modules["bastion.idp.httpx_module"].httpx.AsyncClient()
    rows.append((label, rss()))
print(json.dumps(rows))
"""


def mapping_name(path: str) -> str:
    """What a mapped file is, in a reader's words."""
    if path in ("", "[heap]"):
        return "anonymous: Python objects, malloc"
    if "libpython" in path:
        return "libpython (the interpreter's code)"
    if "/site-packages/" in path:
        package = path.split("/site-packages/", 1)[1].split("/", 1)[0]
        return f"{package} (extension)"
    if "/src/bastion/" in path:
        return "Bastion's compiled modules"
    if "/lib-dynload/" in path:
        return "stdlib extensions (lib-dynload)"
    if path.startswith("/usr/lib"):
        return path.rsplit("/", 1)[1].split(".so", 1)[0]
    return "other (stack, vdso, locale)"


def worker_maps(pid: int) -> Counter[str]:
    """RSS (KiB) of a process by mapping_name, from /proc/PID/smaps."""
    sizes: Counter[str] = Counter()
    name = ""
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if not fields[0].endswith(":"):  # a mapping's first line: range perms ... [path]
                name = mapping_name(fields[5] if len(fields) > 5 else "")
            elif fields[0] == "Rss:":
                sizes[name] += int(fields[1])
    return sizes


def serve(server: Server, plugin: str) -> None:
    """Requests that load what serving needs, each checked."""
    headers: tuple[str, ...] = ()
    if plugin == "oauth":
        headers = (f"Authorization: Bearer {issue_token(server)}",)
    for _ in range(REQUESTS):
        status, body = fetch(server.port, "/memory", headers)
        if status != 200:
            raise server.fail(f"/memory returned {status} {body[:200]!r}")


def measure_workers(workdir: Path) -> dict[str, Counter[str]]:
    upstream = start_pyupstream(workdir, "upstream", None)
    idp = start_idp(workdir, None)
    plugin_sets = {
        "proxy only": None,
        "oauth": oauth_plugin(),
        "upstream-oauth": upstream_oauth_plugin(idp.port),
    }
    result: dict[str, Counter[str]] = {}
    try:
        for label, plugins in plugin_sets.items():
            name = label.replace(" ", "-")
            server = start_bastion(workdir, name, 1, None, upstream.port, False, plugins)
            try:
                serve(server, label)
                time.sleep(SETTLE)
                result[label] = worker_maps(server.pid)  # one worker: run execs it (--single)
            finally:
                server.stop()
    finally:
        idp.stop()
        upstream.stop()
    return result


def import_ledger() -> list[tuple[str, int]]:
    done = subprocess.run(
        [sys.executable, "-c", LEDGER, json.dumps(GROUPS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [(label, rss) for label, rss in json.loads(done.stdout)]


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def workers_table(maps: dict[str, Counter[str]]) -> str:
    labels = list(maps)
    totals = {label: sum(maps[label].values()) for label in labels}
    names = sorted(
        {n for m in maps.values() for n, v in m.items() if v >= 256},
        key=lambda n: -max(m.get(n, 0) for m in maps.values()),
    )
    lines = [
        "| mapped | " + " | ".join(f"{label} (MiB)" for label in labels) + " |",
        "| --- |" + " ---: |" * len(labels),
    ]
    for name in names:
        lines.append(
            f"| {name} | " + " | ".join(mib(maps[lb].get(name, 0)) for lb in labels) + " |"
        )
    rest = {lb: totals[lb] - sum(maps[lb].get(n, 0) for n in names) for lb in labels}
    lines.append(
        "| the rest (mappings under 0.25 MiB) | "
        + " | ".join(mib(rest[lb]) for lb in labels)
        + " |"
    )
    lines.append("| **RSS** | " + " | ".join(f"**{mib(totals[lb])}**" for lb in labels) + " |")
    return "\n".join(lines)


def ledger_table(rows: list[tuple[str, int]]) -> str:
    lines = ["| imported | adds (MiB) | RSS after (MiB) |", "| --- | ---: | ---: |"]
    previous = 0
    for label, rss in rows:
        lines.append(f"| {label} | {mib(rss - previous)} | {mib(rss)} |")
        previous = rss
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bastion-memory-") as tmp:
        maps = measure_workers(Path(tmp))
    print("RSS of one running worker, by mapping (KiB from /proc/PID/smaps, shown in MiB):\n")
    print(workers_table(maps))
    print("\nRSS each import group adds in a fresh interpreter, in a worker's order:\n")
    print(ledger_table(import_ledger()))


if __name__ == "__main__":
    main()
