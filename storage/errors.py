"""Exceptions raised by the storage layer."""

from __future__ import annotations

import os

__all__ = ["CorruptLogError", "CorruptSnapshotError", "LogError"]


class LogError(Exception):
    """A log or snapshot operation failed (I/O error, bad argument, limit exceeded)."""


class CorruptLogError(LogError):
    """A complete record on disk fails its checks; the node must not start on this log."""

    def __init__(self, path: str | os.PathLike[str], offset: int, reason: str) -> None:
        self.path = os.fspath(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"corrupt log record in {self.path} at offset {offset}: {reason}")


class CorruptSnapshotError(LogError):
    """The newest snapshot file fails its checks."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"corrupt snapshot {self.path}: {reason}")
