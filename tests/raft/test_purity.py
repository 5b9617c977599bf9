"""The core is pure: no I/O, clocks, threads or randomness (DESIGN.md section 2)."""

from __future__ import annotations

import ast
from pathlib import Path

import storage.raft.core as core_module

FORBIDDEN = {
    "trio",
    "socket",
    "time",
    "datetime",
    "random",
    "secrets",
    "os",
    "threading",
    "uuid",
    "asyncio",
    "select",
    "subprocess",
}


def test_core_imports_nothing_impure() -> None:
    tree = ast.parse(Path(core_module.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert names, "found no imports at all: the check is broken"
    assert not names & FORBIDDEN, names & FORBIDDEN


def test_same_seed_same_timeouts() -> None:
    from storage.raft.core import RaftCore, Role
    from tests.raft import config, disk_with

    def first_campaign(seed: int) -> int:
        core = RaftCore(config("a", ["a", "b", "c"], seed=seed), disk_with([]))
        for t in range(100):
            core.tick()
            if core.role != Role.FOLLOWER:
                return t
        raise AssertionError("never campaigned")

    assert [first_campaign(s) for s in range(10)] == [first_campaign(s) for s in range(10)]
