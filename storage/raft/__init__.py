"""Raft consensus for the replicated log: a sans-IO core (``core``) that a driver runs."""

from __future__ import annotations

from storage.raft.core import (
    Busy,
    Entry,
    HardState,
    LogStorage,
    Message,
    MessageDecodeError,
    MsgKind,
    NotLeader,
    ProgressState,
    Proposed,
    RaftConfig,
    RaftCore,
    RaftStorage,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
    decode_message,
    encode_message,
)

__all__ = [
    "Busy",
    "Entry",
    "HardState",
    "LogStorage",
    "Message",
    "MessageDecodeError",
    "MsgKind",
    "NotLeader",
    "ProgressState",
    "Proposed",
    "RaftConfig",
    "RaftCore",
    "RaftStorage",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "decode_message",
    "encode_message",
]
