"""The import rules of DESIGN.md section 2, checked by reading every module's imports.

* ``storage`` imports nothing from ``broker`` or ``protocols``.
* Pure modules (``broker/core``, every ``codec.py``, ``storage/raft/core.py``) import no trio,
  socket, time, random or other source of I/O, threads or clocks.
* ``broker/core`` imports nothing from the rest of ``broker``, nor ``storage`` or ``protocols``.
* ``protocols`` reach the core only through ``broker/api.py`` (plus configuration and logging),
  or through the service adapters of ``broker/adapters`` (AWS APIs), which use only the core API
  themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("broker", "protocols", "storage")
IMPURE = {
    "trio",
    "anyio",
    "asyncio",
    "socket",
    "ssl",
    "select",
    "selectors",
    "time",
    "datetime",
    "random",
    "secrets",
    "threading",
    "multiprocessing",
    "os",
    "subprocess",
    "signal",
    "uuid",
}
PROTOCOL_MAY_IMPORT = (
    "broker.api",
    "broker.config",
    "broker.logs",
    "broker.__version__",
    "broker.adapters",
)
ADAPTER_MAY_IMPORT = ("broker.api", "broker.config", "broker.logs", "broker.adapters")


def imports_of(source: str, module: str) -> list[str]:
    """Absolute module names imported by ``source`` (relative imports resolved)."""
    tree = ast.parse(source)
    package = module.rsplit(".", 1)[0]
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append(name)
            out.extend(f"{name}.{alias.name}" for alias in node.names)
    return out


def is_pure(rel: str) -> bool:
    return (
        rel.startswith("broker/core/") or rel.endswith("/codec.py") or rel == "storage/raft/core.py"
    )


def violations(rel: str, source: str) -> list[str]:
    module = rel[:-3].replace("/", ".")
    if module.endswith(".__init__"):
        module = module[: -len(".__init__")] + ".__init__"
    found: list[str] = []
    for name in imports_of(source, module):
        top = name.split(".")[0]
        if rel.startswith("storage/") and top in ("broker", "protocols"):
            found.append(f"{rel}: storage must not import {name}")
        if is_pure(rel) and top in IMPURE:
            found.append(f"{rel}: pure module must not import {name}")
        if (
            rel.startswith("broker/core/")
            and top in ("broker", "storage", "protocols")
            and not name.startswith("broker.core")
        ):
            found.append(f"{rel}: broker/core must not import {name}")
        if rel.startswith("protocols/") and top == "broker":
            parts = name.split(".")
            prefix = ".".join(parts[:2])
            if len(parts) >= 2 and prefix not in PROTOCOL_MAY_IMPORT and name != "broker":
                found.append(f"{rel}: protocols reach the core only through broker.api, not {name}")
        if rel.startswith("broker/adapters/") and top in ("broker", "storage", "protocols"):
            parts = name.split(".")
            prefix = ".".join(parts[:2])
            if top != "broker" or (len(parts) >= 2 and prefix not in ADAPTER_MAY_IMPORT):
                found.append(f"{rel}: adapters use only the core API, not {name}")
    return found


def project_modules() -> list[tuple[str, str]]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            out.append((rel, path.read_text(encoding="utf-8")))
    return out


def test_project_modules_are_found() -> None:
    rels = {rel for rel, _ in project_modules()}
    assert "broker/core/machine.py" in rels
    assert "storage/log.py" in rels


_MODULES = project_modules()


@pytest.mark.parametrize(("rel", "source"), _MODULES, ids=[rel for rel, _ in _MODULES])
def test_import_rules(rel: str, source: str) -> None:
    assert violations(rel, source) == []


@pytest.mark.parametrize(
    ("rel", "source", "expected"),
    [
        ("storage/log.py", "from broker.core import machine\n", "storage must not import"),
        ("broker/core/queue.py", "import time\n", "pure module must not import time"),
        ("broker/core/queue.py", "from trio import sleep\n", "pure module must not import trio"),
        ("protocols/mqtt/codec.py", "import socket\n", "pure module must not import socket"),
        ("storage/raft/core.py", "import random\n", "pure module must not import random"),
        ("broker/core/queue.py", "from broker.node import Node\n", "broker/core must not import"),
        ("broker/core/queue.py", "from ..node import Node\n", "broker/core must not import"),
        ("protocols/amqp091/processor.py", "from broker.core import machine\n", "only through"),
        ("protocols/amqp091/processor.py", "from broker.node import Node\n", "only through"),
        ("broker/adapters/sqs.py", "from broker.node import Node\n", "only the core API"),
        ("broker/adapters/sqs.py", "from protocols.aws import http\n", "only the core API"),
        ("broker/adapters/sqs.py", "from broker.core import machine\n", "only the core API"),
    ],
)
def test_rules_catch_violations(rel: str, source: str, expected: str) -> None:
    found = violations(rel, source)
    assert any(expected in v for v in found), found


@pytest.mark.parametrize(
    ("rel", "source"),
    [
        ("protocols/amqp091/processor.py", "from broker.api import Broker\n"),
        ("broker/core/machine.py", "from broker.core.queue import Queue\nimport msgpack\n"),
        ("broker/core/machine.py", "from . import routing\n"),
        ("broker/node.py", "import trio\nfrom storage.log import SegmentedLog\n"),
    ],
)
def test_rules_allow_legal_imports(rel: str, source: str) -> None:
    assert violations(rel, source) == []
