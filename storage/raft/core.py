"""Sans-IO Raft: the consensus rules of the replicated log, with no I/O, clock or randomness.

The core follows the Raft paper (Ongaro & Ousterhout, extended version, "§5.x") and Ongaro's
thesis ("thesis §x"): leader election (§5.2), log replication (§5.3), the safety rules (§5.4),
log compaction with chunked InstallSnapshot (§7), leadership transfer (thesis §3.10), pre-vote and
check-quorum (thesis §9.6). Membership is static.

The driver loop (etcd-raft's "Ready" shape)::

    core = RaftCore(config, storage)
    loop:
        feed inputs: core.tick() every tick, core.step(decode_message(frame)) per message,
                     core.propose([...]), core.transfer_leadership(peer), ...
        rd = core.ready()                  # None when there is nothing to do
        if rd is not None:
            0. optionally, send the messages ``sendable_early(rd, m)`` allows (a leader's
               appends, so followers write them while the leader does; thesis 10.2.1)
            1. if rd.snapshot: store it durably, reset the log to start at snapshot.index + 1,
               restore the state machine from it
            2. if rd.entries: truncate the log after rd.entries[0].index - 1 when it reaches
               that far, append the entries
            3. if rd.hard_state: store it
            4. fsync (log, then hard state); only now is step 5 allowed ("persist before you
               speak": a vote or an append acknowledgement must never outlive a crash less
               than the state it vouches for)
            5. send rd.messages (those not sent in step 0; any order, any may be lost)
            6. apply rd.committed to the state machine, in order
            7. core.advance(rd)

Rules the core keeps (each with the section it comes from):

1. One vote per term (§5.2): ``vote`` is only set while it is ``None`` for the current term, and
   it reaches the driver in ``Ready.hard_state`` before the vote response leaves.
2. Election restriction (§5.4.1): a vote (and a pre-vote) is granted only to a candidate whose
   last (term, index) is at least as up to date as ours.
3. Commit by counting only entries of the current term (§5.4.2, Figure 8); earlier entries are
   committed indirectly. The leader counts itself only for entries it has persisted.
4. Log matching (§5.3): an append is accepted only if the entry before it matches; conflicting
   suffixes are truncated, never entries at or below ``committed``. A rejection carries a
   (hint_index, hint_term) pair so the leader skips a whole term per round trip (§5.3, the
   "optimization" paragraph, as etcd-raft does it).
5. Randomized election timeouts in ``[election_ticks, 2 * election_ticks)`` (§5.2, §9.3).
6. Pre-vote (thesis §9.6): a node first asks whether it could win at ``term + 1`` without
   changing any state; only a majority of yes bumps the term, so a node that cannot win (for
   example one rejoining after a partition) never disrupts the cluster.
7. Check-quorum and leases (thesis §9.6): a leader that has not heard from a majority within an
   election timeout steps down; a follower that heard from a leader within the election timeout
   ignores (pre-)vote requests, unless they come from a leadership transfer.
8. Leadership transfer (thesis §3.10): the leader stops accepting proposals, catches the target
   up, sends it TimeoutNow, and gives up after an election timeout.
9. A leader appends an empty entry (``data == b""``) on election, so it can commit entries of
   earlier terms (§5.4.2, §8). Applications must ignore empty entries.
10. A node whose log failed a CRC check (``log_damaged=True``; the driver first truncates the log
    to its last good entry) may have lost entries it acknowledged, which a leader may already
    have counted (or may still count) towards a commit. It neither campaigns nor grants
    (pre-)votes until it holds a committed entry of a term newer than the one in its hard state
    at restart. Until then every election quorum excludes it and so still intersects every
    commit quorum minus it (2q > n), which keeps Leader Completeness (§5.4.3); afterwards its log
    holds a newer leader's committed prefix and with it every entry it had acknowledged that
    counted. This tolerates one damaged node at a time; damage on a majority loses data.
11. Bounds: ``inflight_messages_max`` appends in flight per follower, ``entries_per_message_max``
    and ``bytes_per_message_max`` per append (at least one entry), ``snapshot_chunk_bytes_max``
    per snapshot chunk, ``unstable_entries_max`` / ``unstable_bytes_max`` for entries proposed
    but not yet persisted (``propose`` answers ``Busy`` beyond them), and
    ``apply_batch_entries_max`` / ``apply_batch_bytes_max`` for committed entries per Ready.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack

from storage.interface import Log

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
    "sendable_early",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "decode_message",
    "encode_message",
]

_U64_MAX = (1 << 64) - 1


# -- values ------------------------------------------------------------------------------------


class Role(enum.IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class MsgKind(enum.IntEnum):
    """Message kinds. Wire values are append-only: never renumber, only add."""

    APPEND = 1
    APPEND_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    PRE_VOTE = 5
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    SNAPSHOT_RESP = 10
    TIMEOUT_NOW = 11


class ProgressState(enum.IntEnum):
    """How the leader replicates to one follower (etcd-raft's progress states)."""

    PROBE = 0  # one append at a time until the follower's match is found
    REPLICATE = 1  # pipelined appends, at most inflight_messages_max outstanding
    SNAPSHOT = 2  # sending InstallSnapshot chunks, no appends


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before the messages of the same Ready leave (§5, Figure 2)."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state, reported when it changes (for metrics, routing clients to the leader)."""

    role: Role
    leader: str | None
    term: int


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    data: bytes


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """The last entry a snapshot covers; ``index == 0`` means no snapshot."""

    index: int = 0
    term: int = 0
    size_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A complete snapshot received from the leader, for the driver to install."""

    index: int
    term: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message. The meaning of the generic fields depends on ``kind``:

    ==============  ==========================  =========================  ====================
    kind            index                       log_term                   other fields
    ==============  ==========================  =========================  ====================
    APPEND          index before ``entries``    term of that entry         entries, commit
    APPEND_RESP     last index now matching,    hint_term on reject        reject, hint_index
                    or the rejected ``index``
    (PRE_)VOTE      candidate's last index      candidate's last term      force (transfer)
    (PRE_)VOTE_RESP                                                        reject
    HEARTBEAT                                                              commit
    SNAPSHOT        snapshot's last index       snapshot's last term       offset, data, done
    SNAPSHOT_RESP   snapshot's last index                                  offset (next wanted)
    TIMEOUT_NOW
    ==============  ==========================  =========================  ====================

    ``entries`` holds ``(term, data)`` pairs for indexes ``index + 1, index + 2, ...``.
    """

    kind: MsgKind
    to: str
    frm: str
    term: int
    index: int = 0
    log_term: int = 0
    commit: int = 0
    entries: tuple[tuple[int, bytes], ...] = ()
    reject: bool = False
    hint_index: int = 0
    hint_term: int = 0
    offset: int = 0
    data: bytes = b""
    done: bool = False
    force: bool = False


@dataclass(frozen=True, slots=True)
class Ready:
    """Work for the driver; see the module docstring for the order it must be done in.

    ``entries`` are contiguous; the driver drops any log entries from ``entries[0].index`` on
    before appending them. ``messages`` may only be sent once ``snapshot``, ``entries`` and
    ``hard_state`` are durable. ``committed`` may be applied as soon as the previous steps are
    done; they never include entries from this Ready's ``entries``.
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    snapshot: Snapshot | None
    entries: tuple[Entry, ...]
    committed: tuple[Entry, ...]
    messages: tuple[Message, ...]
    #: the term this node led in when the Ready was taken (0: not leading); see
    #: :func:`sendable_early`
    leader_term: int = 0


def sendable_early(rd: Ready, m: Message) -> bool:
    """Whether ``m`` of ``rd.messages`` may be sent before ``rd`` is durable (thesis §10.2.1):
    a leader's appends and heartbeats of its current term. A leader counts its own log towards
    a commit only once :meth:`RaftCore.advance` reports the entries stable, so its followers
    may write them in parallel with it; if it crashes first they hold entries it lost, as with
    any uncommitted entries of a leader. Everything else (votes, responses, anything sent after
    a term change) waits for the disk."""
    return (
        rd.leader_term != 0
        and m.term == rd.leader_term
        and (m.kind == MsgKind.APPEND or m.kind == MsgKind.HEARTBEAT)
    )


@dataclass(frozen=True, slots=True)
class Proposed:
    """The proposal was appended at ``first_index ..`` in ``term``; it is acknowledged once the
    entry at ``first_index`` is applied with that same ``term``."""

    first_index: int
    term: int


@dataclass(frozen=True, slots=True)
class NotLeader:
    leader_hint: str | None


@dataclass(frozen=True, slots=True)
class Busy:
    """The leader refuses proposals for now (unstable buffer full, leadership transfer)."""

    reason: str


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Static configuration of one node. Ticks are the only unit of time the core knows."""

    id: str
    peers: tuple[str, ...]  # every member, this node included
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    entries_per_message_max: int = 1024
    bytes_per_message_max: int = 1 << 20
    inflight_messages_max: int = 64
    snapshot_chunk_bytes_max: int = 1 << 20
    seed: int = 0
    entry_bytes_max: int = 16 << 20
    unstable_entries_max: int = 1 << 16
    unstable_bytes_max: int = 256 << 20
    apply_batch_entries_max: int = 4096
    apply_batch_bytes_max: int = 64 << 20
    snapshot_bytes_max: int = 1 << 36

    def __post_init__(self) -> None:
        if self.id not in self.peers:
            raise ValueError(f"id {self.id!r} must be one of peers {self.peers!r}")
        if len(set(self.peers)) != len(self.peers):
            raise ValueError(f"peers must be distinct: {self.peers!r}")
        if not 0 < self.heartbeat_ticks < self.election_ticks:
            raise ValueError("need 0 < heartbeat_ticks < election_ticks")
        for name in (
            "entries_per_message_max",
            "bytes_per_message_max",
            "inflight_messages_max",
            "snapshot_chunk_bytes_max",
            "entry_bytes_max",
            "unstable_entries_max",
            "unstable_bytes_max",
            "apply_batch_entries_max",
            "apply_batch_bytes_max",
            "snapshot_bytes_max",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


# -- storage -----------------------------------------------------------------------------------


class RaftStorage(Protocol):
    """The durable state the core reads; the driver writes it as Ready asks.

    ``term_at`` answers for ``[first_index() - 1, last_index()]`` when it can (the entry before
    ``first_index`` is usually the snapshot's last entry) and ``None`` otherwise. The core reads
    ``initial_state`` once, at construction.
    """

    def initial_state(self) -> HardState: ...
    def snapshot_meta(self) -> SnapshotMeta: ...
    def snapshot_read(self, index: int, offset: int, size_bytes_max: int) -> bytes: ...
    def first_index(self) -> int: ...
    def last_index(self) -> int: ...
    def term_at(self, index: int) -> int | None: ...
    def entries(self, lo: int, hi: int, bytes_max: int) -> list[tuple[int, bytes]]: ...


class LogStorage:
    """RaftStorage over a ``storage.interface.Log`` (``SegmentedLog`` or ``MemoryLog``).

    The driver keeps ``hard_state`` and ``snapshot`` current (both are plain attributes) and
    provides the snapshot's bytes through ``snapshot_source(index, offset, size_bytes_max)``.
    Entries of the log at or below the snapshot index (whole segments not yet compacted) are
    still served, so a follower just behind the snapshot gets entries instead of a snapshot.
    """

    def __init__(
        self,
        log: Log,
        hard_state: HardState | None = None,
        snapshot: SnapshotMeta | None = None,
        snapshot_source: Callable[[int, int, int], bytes] | None = None,
    ) -> None:
        self.log = log
        self.hard_state = hard_state if hard_state is not None else HardState()
        self.snapshot = snapshot if snapshot is not None else SnapshotMeta()
        self.snapshot_source = snapshot_source

    def initial_state(self) -> HardState:
        return self.hard_state

    def snapshot_meta(self) -> SnapshotMeta:
        return self.snapshot

    def snapshot_read(self, index: int, offset: int, size_bytes_max: int) -> bytes:
        if self.snapshot_source is None:
            raise LookupError("no snapshot_source configured")
        return self.snapshot_source(index, offset, size_bytes_max)

    def _log_usable(self) -> bool:
        # A log that ends before the snapshot is stale (a snapshot was installed over it).
        return self.log.last_index >= self.snapshot.index

    def first_index(self) -> int:
        return self.log.first_index if self._log_usable() else self.snapshot.index + 1

    def last_index(self) -> int:
        return self.log.last_index if self._log_usable() else self.snapshot.index

    def term_at(self, index: int) -> int | None:
        if index == self.snapshot.index:
            return self.snapshot.term
        if self._log_usable() and self.log.first_index <= index <= self.log.last_index:
            return self.log.term_at(index)
        if index == 0:
            return 0
        return None

    def entries(self, lo: int, hi: int, bytes_max: int) -> list[tuple[int, bytes]]:
        return self.log.entries(lo, hi, bytes_max=bytes_max)


# -- the message codec -------------------------------------------------------------------------


class MessageDecodeError(ValueError):
    """The bytes are not a valid Raft message."""


_WIRE_VERSION = 1
_WIRE_FIELDS = 16


def encode_message(msg: Message) -> bytes:
    """msgpack: ``[version, kind, to, frm, term, index, log_term, commit, [term, data, ...],
    reject, hint_index, hint_term, offset, data, done, force]``."""
    flat: list[Any] = []
    for term, data in msg.entries:
        flat.append(term)
        flat.append(data)
    out = msgpack.packb(
        [
            _WIRE_VERSION,
            int(msg.kind),
            msg.to,
            msg.frm,
            msg.term,
            msg.index,
            msg.log_term,
            msg.commit,
            flat,
            msg.reject,
            msg.hint_index,
            msg.hint_term,
            msg.offset,
            msg.data,
            msg.done,
            msg.force,
        ],
        use_bin_type=True,
    )
    assert isinstance(out, bytes)
    return out


def _u64(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _U64_MAX:
        raise MessageDecodeError(f"{what} must be an unsigned 64-bit integer, not {value!r:.40}")
    return value


def _flag(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise MessageDecodeError(f"{what} must be a boolean")
    return value


def _text(value: object, what: str) -> str:
    if type(value) is not str or not value:
        raise MessageDecodeError(f"{what} must be a non-empty string")
    return value


def _blob(value: object, what: str) -> bytes:
    if type(value) is not bytes:
        raise MessageDecodeError(f"{what} must be bytes")
    return value


def decode_message(raw: bytes) -> Message:
    """The inverse of :func:`encode_message`; anything malformed raises MessageDecodeError."""
    try:
        obj = msgpack.unpackb(raw, raw=False, use_list=True, strict_map_key=True)
    except Exception as exc:  # msgpack raises several types (ValueError, ExtraData, ...)
        raise MessageDecodeError(f"not a msgpack message: {exc}") from None
    if type(obj) is not list or len(obj) != _WIRE_FIELDS:
        raise MessageDecodeError("a message is a list of 16 fields")
    if obj[0] != _WIRE_VERSION or type(obj[0]) is not int:
        raise MessageDecodeError(f"unknown message version {obj[0]!r:.40}")
    try:
        kind = MsgKind(_u64(obj[1], "kind"))
    except ValueError:
        raise MessageDecodeError(f"unknown message kind {obj[1]!r}") from None
    flat = obj[8]
    if type(flat) is not list or len(flat) % 2:
        raise MessageDecodeError("entries must be a flat list of (term, data) pairs")
    entries: tuple[tuple[int, bytes], ...] = ()
    if flat:
        entries = tuple(
            (_u64(flat[i], "entry term"), _blob(flat[i + 1], "entry data"))
            for i in range(0, len(flat), 2)
        )
    return Message(
        kind=kind,
        to=_text(obj[2], "to"),
        frm=_text(obj[3], "frm"),
        term=_u64(obj[4], "term"),
        index=_u64(obj[5], "index"),
        log_term=_u64(obj[6], "log_term"),
        commit=_u64(obj[7], "commit"),
        entries=entries,
        reject=_flag(obj[9], "reject"),
        hint_index=_u64(obj[10], "hint_index"),
        hint_term=_u64(obj[11], "hint_term"),
        offset=_u64(obj[12], "offset"),
        data=_blob(obj[13], "data"),
        done=_flag(obj[14], "done"),
        force=_flag(obj[15], "force"),
    )


# -- helpers -----------------------------------------------------------------------------------


class _Prng:
    """splitmix64: a tiny deterministic generator, so the core needs no ``random``."""

    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = seed & _U64_MAX

    def below(self, n: int) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _U64_MAX
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _U64_MAX
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _U64_MAX
        return (z ^ (z >> 31)) % n


def _fnv1a(text: str) -> int:
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & _U64_MAX
    return h


class _Progress:
    """The leader's view of one follower (§5.3 nextIndex/matchIndex, plus flow control)."""

    __slots__ = (
        "inflight",
        "match",
        "next",
        "probe_sent",
        "recent_active",
        "snap_index",
        "snap_offset",
        "snap_progress",
        "snap_size",
        "snap_term",
        "state",
    )

    def __init__(self, next_index: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.inflight: deque[int] = deque()  # last index of each append in flight
        self.probe_sent = False
        self.recent_active = False
        self.snap_index = 0
        self.snap_term = 0
        self.snap_size = 0
        self.snap_offset = 0
        self.snap_progress = False  # a chunk was acknowledged since the last heartbeat

    def paused(self, inflight_max: int) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return len(self.inflight) >= inflight_max
        return True

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.snap_index + 1)
        else:
            self.next = self.match + 1
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflight.clear()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.inflight.clear()

    def become_snapshot(self, meta: SnapshotMeta) -> None:
        self.state = ProgressState.SNAPSHOT
        self.inflight.clear()
        self.snap_index, self.snap_term, self.snap_size = meta.index, meta.term, meta.size_bytes
        self.snap_offset = 0

    def maybe_update(self, index: int) -> bool:
        """An acknowledgement up to ``index``; True if the match moved."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        return updated

    def maybe_decr_to(self, rejected: int, hint: int) -> bool:
        """A rejection of the append after ``rejected``; True if it was not stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = max(min(rejected, hint + 1), self.match + 1)
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True


# -- the core ----------------------------------------------------------------------------------


class RaftCore:
    """One Raft node, driven by ``tick``/``step``/``propose`` and drained by ``ready``/``advance``.

    ``applied`` is the index the driver's state machine already reflects at start (default: the
    snapshot index); committed entries after it are handed out again. ``log_damaged`` marks a
    node whose log lost a suffix to corruption (rule 10 of the module docstring).
    """

    def __init__(
        self,
        config: RaftConfig,
        storage: RaftStorage,
        *,
        applied: int | None = None,
        log_damaged: bool = False,
    ) -> None:
        self.config = config
        self.id = config.id
        self._others = tuple(p for p in config.peers if p != config.id)
        self._quorum = len(config.peers) // 2 + 1
        self._storage = storage
        self._prng = _Prng(config.seed ^ _fnv1a(config.id))
        # the log: storage (stable) + unstable snapshot + unstable entries from _u_offset
        self._u_snapshot: Snapshot | None = None
        self._u_snapshot_handed = False
        self._u_entries: list[Entry] = []
        self._u_offset = storage.last_index() + 1
        self._u_bytes = 0
        self._log_damaged = log_damaged
        self._damaged_term = 0  # set below: the term the damaged log was written in

        hs = storage.initial_state()
        snap = storage.snapshot_meta()
        self.term = hs.term
        self.vote = hs.vote
        self._damaged_term = hs.term
        # The commit index is only knowledge: a crash may keep a hard state whose commit is
        # ahead of unsynced entries it was written with, and a damaged log lost entries.
        self.committed = max(min(hs.commit, storage.last_index()), snap.index)
        self._applied = snap.index if applied is None else applied
        if not snap.index <= self._applied <= self.committed:
            raise ValueError(
                f"applied={self._applied} must be within [{snap.index}, {self.committed}]"
            )
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._transfer_elapsed = 0
        self._randomized_timeout = config.election_ticks
        self._transferee: str | None = None
        self._votes: dict[str, bool] = {}
        self._prs: dict[str, _Progress] = {}
        self._msgs: list[Message] = []
        self._bcast_pending = False
        self._snap_recv: tuple[int, int, bytearray] | None = None
        self._outstanding: Ready | None = None
        self._prev_hs = hs
        self._prev_ss = SoftState(Role.FOLLOWER, None, self.term)
        self._become_follower(self.term, None)

    # -- read-only views ---------------------------------------------------------------------

    @property
    def applied(self) -> int:
        """The last index handed to the driver for applying (or installed as a snapshot)."""
        return self._applied

    @property
    def last_index(self) -> int:
        return self._last_index()

    @property
    def log_damaged(self) -> bool:
        return self._log_damaged

    @property
    def lead_transferee(self) -> str | None:
        return self._transferee

    def term_at(self, index: int) -> int | None:
        return self._term(index)

    def soft_state(self) -> SoftState:
        return SoftState(self.role, self.leader, self.term)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.committed)

    def progress(self, peer: str) -> tuple[ProgressState, int, int, int]:
        """``(state, match, next, appends in flight)`` of ``peer``; leaders only."""
        pr = self._prs[peer]
        return pr.state, pr.match, pr.next, len(pr.inflight)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries ``[lo, hi)`` of the core's view of the log (stable and unstable)."""
        got = self._slice(lo, hi, _U64_MAX, _U64_MAX)
        if got is None:
            raise IndexError(f"entries from {lo} were compacted")
        return got

    # -- inputs ------------------------------------------------------------------------------

    def tick(self) -> None:
        """One unit of logical time."""
        if self.role == Role.LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            if self._promotable() and self._election_elapsed >= self._randomized_timeout:
                self._election_elapsed = 0
                self._hup(force=False)

    def campaign(self) -> None:
        """Start an election now (tests and operators); a no-op on a leader."""
        self._hup(force=False)

    def propose(self, datas: Sequence[bytes]) -> Proposed | NotLeader | Busy:
        """Append ``datas`` as consecutive entries if this node leads and has room."""
        if self.role != Role.LEADER:
            return NotLeader(self.leader)
        if self._transferee is not None:
            return Busy("leadership transfer in progress")
        if not datas:
            raise ValueError("propose needs at least one entry")
        size = 0
        for data in datas:
            if len(data) > self.config.entry_bytes_max:
                raise ValueError(f"entry of {len(data)} bytes exceeds entry_bytes_max")
            size += len(data)
        if (
            len(self._u_entries) + len(datas) > self.config.unstable_entries_max
            or self._u_bytes + size > self.config.unstable_bytes_max
        ):
            return Busy("unstable buffer full")
        first = self._last_index() + 1
        self._append_new(datas)
        self._bcast_pending = True
        return Proposed(first, self.term)

    def transfer_leadership(self, to: str) -> bool:
        """Hand leadership to ``to`` (thesis §3.10); False when this node is not the leader."""
        if to not in self.config.peers:
            raise ValueError(f"unknown peer {to!r}")
        if self.role != Role.LEADER or to == self.id:
            return False
        if self._transferee == to:
            return True
        self._transferee = to
        self._transfer_elapsed = 0
        pr = self._prs[to]
        if pr.match == self._last_index():
            self._send(MsgKind.TIMEOUT_NOW, to)
        else:
            self._send_append(to)
        return True

    def report_unreachable(self, peer: str) -> None:
        """The transport could not reach ``peer``: stop pipelining to it (probe again)."""
        if self.role == Role.LEADER and peer in self._prs:
            pr = self._prs[peer]
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()

    def report_compacted(self, index: int) -> None:
        """The driver saved a snapshot at ``index`` (see ``RaftStorage.snapshot_meta``) and may
        have compacted the log up to it. Followers that now need compacted entries get the
        snapshot."""
        if index > self._applied:
            raise ValueError(f"cannot snapshot at {index}: only {self._applied} applied")
        meta = self._storage.snapshot_meta()
        if meta.index < index:
            raise ValueError(f"storage reports snapshot {meta.index}, expected >= {index}")

    def step(self, m: Message) -> None:
        """Handle one message from a peer."""
        if m.to != self.id:
            raise ValueError(f"message for {m.to!r} stepped into {self.id!r}")
        if m.frm not in self.config.peers or m.frm == self.id:
            return
        if m.term > self.term:
            if m.kind in (MsgKind.VOTE, MsgKind.PRE_VOTE):
                in_lease = (
                    self.config.check_quorum
                    and self.leader is not None
                    and self._election_elapsed < self.config.election_ticks
                )
                if in_lease and not m.force:
                    return  # thesis §9.6: we heard from a live leader recently
            if m.kind == MsgKind.PRE_VOTE or (m.kind == MsgKind.PRE_VOTE_RESP and not m.reject):
                pass  # a pre-vote changes no term (thesis §9.6)
            elif m.kind in (MsgKind.APPEND, MsgKind.HEARTBEAT, MsgKind.SNAPSHOT):
                self._become_follower(m.term, m.frm)
            else:
                self._become_follower(m.term, None)
        elif m.term < self.term:
            if m.kind in (MsgKind.APPEND, MsgKind.HEARTBEAT) and (
                self.config.check_quorum or self.config.pre_vote
            ):
                # A stale leader learns the new term from this and steps down; without it a
                # leader cut off long enough to lose its term would never hear of it.
                self._send(MsgKind.APPEND_RESP, m.frm)
            elif m.kind == MsgKind.PRE_VOTE:
                self._send(MsgKind.PRE_VOTE_RESP, m.frm, reject=True)
            return

        if m.kind in (MsgKind.VOTE, MsgKind.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.role == Role.LEADER:
            self._step_leader(m)
        elif self.role == Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    # -- output ------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        self._flush_bcast()
        return bool(
            self._msgs
            or self._u_entries
            or (self._u_snapshot is not None and not self._u_snapshot_handed)
            or self.soft_state() != self._prev_ss
            or self.hard_state() != self._prev_hs
            or self._next_committed_bounds() is not None
        )

    def ready(self) -> Ready | None:
        """Take the pending work; the driver must call :meth:`advance` with it when done."""
        if self._outstanding is not None:
            raise RuntimeError("advance the previous Ready before taking the next one")
        if not self.has_ready():
            return None
        ss = self.soft_state()
        hs = self.hard_state()
        snap = None
        if self._u_snapshot is not None and not self._u_snapshot_handed:
            snap = self._u_snapshot
            self._u_snapshot_handed = True
            self._applied = max(self._applied, snap.index)
        committed: tuple[Entry, ...] = ()
        bounds = self._next_committed_bounds()
        if bounds is not None:
            got = self._slice(
                bounds[0],
                bounds[1],
                self.config.apply_batch_bytes_max,
                self.config.apply_batch_entries_max,
            )
            assert got, f"committed entries {bounds} are not in the log"
            committed = tuple(got)
            self._applied = committed[-1].index
        rd = Ready(
            soft_state=ss if ss != self._prev_ss else None,
            hard_state=hs if hs != self._prev_hs else None,
            snapshot=snap,
            entries=tuple(self._u_entries),
            committed=committed,
            messages=tuple(self._msgs),
            leader_term=self.term if self.role == Role.LEADER else 0,
        )
        self._msgs = []
        self._prev_ss = ss
        self._prev_hs = hs
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver persisted ``rd``, sent its messages and applied its committed entries."""
        if rd is not self._outstanding:
            raise RuntimeError("advance() takes the Ready returned by the last ready()")
        self._outstanding = None
        snap = self._u_snapshot
        if rd.snapshot is not None and snap is not None and snap.index == rd.snapshot.index:
            self._u_snapshot = None
            self._u_snapshot_handed = False
        if rd.entries:
            last = rd.entries[-1]
            self._stable_to(last.index, last.term)
        if self.role == Role.LEADER:
            pr = self._prs[self.id]
            if pr.maybe_update(self._stable_last()) and self._maybe_commit():
                self._bcast_pending = True

    def check_invariants(self) -> None:
        """Assert the core's internal invariants (tests and the simulator call this often)."""
        last = self._last_index()
        assert self._applied <= self.committed <= last, (self._applied, self.committed, last)
        assert self._u_offset >= 1
        if self._u_entries:
            assert self._u_entries[0].index == self._u_offset
            prev = self._term(self._u_offset - 1)
            for e in self._u_entries:
                assert prev is None or e.term >= prev, "terms decrease in the log"
                prev = e.term
        if self.role == Role.LEADER:
            assert self.leader == self.id
            for peer, pr in self._prs.items():
                assert pr.match < pr.next <= last + 1, (peer, pr.match, pr.next, last)
                assert len(pr.inflight) <= self.config.inflight_messages_max
        if self.role == Role.CANDIDATE:
            assert self.vote == self.id

    # -- roles -------------------------------------------------------------------------------

    def _promotable(self) -> bool:
        return not self._log_damaged

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self.config.election_ticks + self._prng.below(
            self.config.election_ticks
        )
        self._transferee = None
        self._votes = {}
        self._prs = {}
        self._bcast_pending = False

    def _become_follower(self, term: int, leader: str | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _become_pre_candidate(self) -> None:
        # Term and vote stay as they are (thesis §9.6); only the role and tally change.
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self._votes = {}
        self._prs = {}
        self._randomized_timeout = self.config.election_ticks + self._prng.below(
            self.config.election_ticks
        )

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        assert self.role == Role.CANDIDATE and not self._log_damaged
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        nxt = self._last_index() + 1
        self._prs = {p: _Progress(nxt) for p in self.config.peers}
        me = self._prs[self.id]
        me.match = self._stable_last()
        me.state = ProgressState.REPLICATE
        me.recent_active = True
        # §5.4.2/§8: an entry of the new term lets earlier entries commit.
        self._append_new([b""])
        self._bcast_pending = True

    def _hup(self, *, force: bool) -> None:
        if self.role == Role.LEADER or not self._promotable():
            return
        if self.config.pre_vote and not force:
            self._become_pre_candidate()
            self._votes[self.id] = True
            if self._tally()[0] >= self._quorum:
                self._campaign(force=False)
                return
            for p in self._others:
                self._msgs.append(
                    Message(
                        MsgKind.PRE_VOTE,
                        p,
                        self.id,
                        self.term + 1,
                        index=self._last_index(),
                        log_term=self._last_term(),
                    )
                )
        else:
            self._campaign(force=force)

    def _campaign(self, *, force: bool) -> None:
        self._become_candidate()
        self._votes[self.id] = True
        if self._tally()[0] >= self._quorum:
            self._become_leader()
            return
        for p in self._others:
            self._send(
                MsgKind.VOTE,
                p,
                index=self._last_index(),
                log_term=self._last_term(),
                force=force,
            )

    def _tally(self) -> tuple[int, int]:
        granted = sum(1 for v in self._votes.values() if v)
        return granted, len(self._votes) - granted

    # -- message handling --------------------------------------------------------------------

    def _handle_vote_request(self, m: Message) -> None:
        resp = MsgKind.VOTE_RESP if m.kind == MsgKind.VOTE else MsgKind.PRE_VOTE_RESP
        can_vote = (
            self.vote == m.frm
            or (self.vote is None and self.leader is None)
            or (m.kind == MsgKind.PRE_VOTE and m.term > self.term)
        )
        if (
            can_vote
            and not self._log_damaged
            and self._is_up_to_date(m.index, m.log_term)  # §5.4.1
        ):
            # A pre-vote answer carries the term asked about, so the pre-candidate counts it.
            self._msgs.append(Message(resp, m.frm, self.id, m.term))
            if m.kind == MsgKind.VOTE:
                self._election_elapsed = 0
                self.vote = m.frm
        else:
            self._send(resp, m.frm, reject=True)

    def _step_leader(self, m: Message) -> None:
        pr = self._prs.get(m.frm)
        if pr is None:
            return
        if m.kind == MsgKind.APPEND_RESP:
            pr.recent_active = True
            if m.reject:
                self._handle_append_reject(m, pr)
                return
            if not pr.maybe_update(m.index):
                return
            if pr.state == ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state == ProgressState.SNAPSHOT:
                if pr.match >= pr.snap_index:
                    pr.become_probe()
            else:
                while pr.inflight and pr.inflight[0] <= m.index:
                    pr.inflight.popleft()
            if self._maybe_commit():
                self._bcast_pending = True
            self._send_more(m.frm)
            if m.frm == self._transferee and pr.match == self._last_index():
                self._send(MsgKind.TIMEOUT_NOW, m.frm)  # thesis §3.10
        elif m.kind == MsgKind.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state == ProgressState.REPLICATE and len(pr.inflight) >= (
                self.config.inflight_messages_max
            ):
                pr.inflight.popleft()  # a lost append must not stall the window forever
            if pr.state == ProgressState.SNAPSHOT:
                if not pr.snap_progress:
                    self._send_snapshot_chunk(m.frm)  # retransmit the chunk we wait for
                pr.snap_progress = False
            elif pr.match < self._last_index():
                self._send_append(m.frm, send_if_empty=True)
        elif m.kind == MsgKind.SNAPSHOT_RESP:
            pr.recent_active = True
            if pr.state != ProgressState.SNAPSHOT or m.index != pr.snap_index:
                return
            if m.offset != pr.snap_offset:
                pr.snap_offset = min(m.offset, pr.snap_size)
                pr.snap_progress = True
                self._send_snapshot_chunk(m.frm)

    def _handle_append_reject(self, m: Message, pr: _Progress) -> None:
        if m.hint_index < pr.match:
            # The follower lost entries it acknowledged: only a damaged log does that.
            pr.match = m.hint_index
        hint = m.hint_index
        if m.hint_term > 0:
            hint = self._find_conflict_by_term(m.hint_index, m.hint_term)[0]
        if pr.maybe_decr_to(m.index, hint):
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
            self._send_append(m.frm)

    def _step_follower(self, m: Message) -> None:
        if m.kind in (MsgKind.APPEND, MsgKind.HEARTBEAT, MsgKind.SNAPSHOT):
            self._election_elapsed = 0
            self.leader = m.frm
            if m.kind == MsgKind.APPEND:
                self._handle_append(m)
            elif m.kind == MsgKind.HEARTBEAT:
                self._commit_to(min(m.commit, self._last_index()))
                self._send(MsgKind.HEARTBEAT_RESP, m.frm)
            else:
                self._handle_snapshot(m)
        elif m.kind == MsgKind.TIMEOUT_NOW:
            self._hup(force=True)  # thesis §3.10: campaign now, past the leader's lease

    def _step_candidate(self, m: Message) -> None:
        if m.kind in (MsgKind.APPEND, MsgKind.HEARTBEAT, MsgKind.SNAPSHOT):
            self._become_follower(m.term, m.frm)  # §5.2: someone else won this term
            self._step_follower(m)
            return
        wanted = MsgKind.VOTE_RESP if self.role == Role.CANDIDATE else MsgKind.PRE_VOTE_RESP
        if m.kind != wanted:
            return
        self._votes[m.frm] = not m.reject
        granted, rejected = self._tally()
        if granted >= self._quorum:
            if self.role == Role.PRE_CANDIDATE:
                self._campaign(force=False)
            else:
                self._become_leader()
        elif rejected >= self._quorum:
            self._become_follower(self.term, None)

    def _handle_append(self, m: Message) -> None:
        if m.index < self.committed:
            self._send(MsgKind.APPEND_RESP, m.frm, index=self.committed)
            return
        last_new = self._maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(MsgKind.APPEND_RESP, m.frm, index=last_new)
            return
        hint_index, hint_term = self._find_conflict_by_term(
            min(m.index, self._last_index()), m.log_term
        )
        self._send(
            MsgKind.APPEND_RESP,
            m.frm,
            index=m.index,
            reject=True,
            hint_index=hint_index,
            hint_term=hint_term,
        )

    def _handle_snapshot(self, m: Message) -> None:
        """§7 (Figure 13), chunk by chunk: accept a chunk only at the offset we expect."""
        if m.index <= self.committed:
            self._snap_recv = None
            self._send(MsgKind.APPEND_RESP, m.frm, index=self.committed)
            return
        if m.offset == 0:
            self._snap_recv = (m.index, m.log_term, bytearray())
        rec = self._snap_recv
        if rec is None or rec[0] != m.index or rec[1] != m.log_term or len(rec[2]) != m.offset:
            expected = len(rec[2]) if rec is not None and rec[0] == m.index else 0
            self._send(MsgKind.SNAPSHOT_RESP, m.frm, index=m.index, offset=expected)
            return
        buf = rec[2]
        if len(buf) + len(m.data) > self.config.snapshot_bytes_max:
            self._snap_recv = None  # refused: configuration mismatch, the leader keeps trying
            return
        buf += m.data
        if not m.done:
            self._send(MsgKind.SNAPSHOT_RESP, m.frm, index=m.index, offset=len(buf))
            return
        self._snap_recv = None
        self._restore(Snapshot(m.index, m.log_term, bytes(buf)))
        # Only the snapshot's entry is known to match the leader; entries we kept after it
        # may not, so acknowledge exactly the snapshot (now our commit index).
        self._send(MsgKind.APPEND_RESP, m.frm, index=self.committed)

    def _restore(self, snap: Snapshot) -> None:
        if self._term(snap.index) == snap.term:
            # §7: our log already holds the snapshot's last entry; keep what follows it.
            self._commit_to(snap.index)
            return
        self._u_snapshot = snap
        self._u_snapshot_handed = False
        self._u_entries = []
        self._u_bytes = 0
        self._u_offset = snap.index + 1
        self.committed = snap.index

    # -- leader replication ------------------------------------------------------------------

    def _tick_leader(self) -> None:
        cfg = self.config
        self._election_elapsed += 1
        if self._election_elapsed >= cfg.election_ticks:
            self._election_elapsed = 0
            if cfg.check_quorum:
                active = sum(1 for pr in self._prs.values() if pr.recent_active)
                for p in self._others:
                    self._prs[p].recent_active = False
                if active < self._quorum:
                    self._become_follower(self.term, None)  # thesis §9.6 check-quorum
                    return
        if self._transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= cfg.election_ticks:
                self._transferee = None  # thesis §3.10: give up, take proposals again
        self._heartbeat_elapsed += 1
        if self._heartbeat_elapsed >= cfg.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            for p in self._others:
                pr = self._prs[p]
                self._send(MsgKind.HEARTBEAT, p, commit=min(pr.match, self.committed))

    def _maybe_commit(self) -> bool:
        matches = sorted((pr.match for pr in self._prs.values()), reverse=True)
        candidate = matches[self._quorum - 1]
        # §5.4.2: only an entry of the current term commits by counting replicas.
        if candidate > self.committed and self._term(candidate) == self.term:
            self._commit_to(candidate)
            return True
        return False

    def _flush_bcast(self) -> None:
        if self._bcast_pending and self.role == Role.LEADER:
            for p in self._others:
                self._send_append(p, send_if_empty=True)
                self._send_more(p)
        self._bcast_pending = False

    def _send_more(self, to: str) -> None:
        pr = self._prs[to]
        while pr.state == ProgressState.REPLICATE and pr.next <= self._last_index():
            if not self._send_append(to):
                break

    def _send_append(self, to: str, *, send_if_empty: bool = False) -> bool:
        cfg = self.config
        pr = self._prs[to]
        if pr.paused(cfg.inflight_messages_max):
            return False
        prev = pr.next - 1
        prev_term = self._term(prev)
        ents = None
        if prev_term is not None:
            ents = self._slice(
                pr.next,
                self._last_index() + 1,
                cfg.bytes_per_message_max,
                cfg.entries_per_message_max,
            )
        if prev_term is None or ents is None:
            return self._start_snapshot(to)
        if not ents and not send_if_empty:
            return False
        self._send(
            MsgKind.APPEND,
            to,
            index=prev,
            log_term=prev_term,
            commit=self.committed,
            entries=tuple((e.term, e.data) for e in ents),
        )
        if pr.state == ProgressState.REPLICATE:
            if ents:
                pr.next = ents[-1].index + 1
                pr.inflight.append(ents[-1].index)
        else:
            pr.probe_sent = True
        return True

    def _start_snapshot(self, to: str) -> bool:
        pr = self._prs[to]
        if not pr.recent_active:
            return False  # do not stream a snapshot to a node that may be down
        meta = self._storage.snapshot_meta()
        if meta.index == 0:
            return False
        pr.become_snapshot(meta)
        self._send_snapshot_chunk(to)
        return True

    def _send_snapshot_chunk(self, to: str) -> None:
        pr = self._prs[to]
        meta = self._storage.snapshot_meta()
        if meta.index != pr.snap_index:
            pr.become_snapshot(meta)  # the driver took a newer snapshot: start over with it
        size = self.config.snapshot_chunk_bytes_max
        data = self._storage.snapshot_read(pr.snap_index, pr.snap_offset, size)
        assert len(data) <= size, "snapshot_read returned more than asked for"
        done = pr.snap_offset + len(data) >= pr.snap_size
        self._send(
            MsgKind.SNAPSHOT,
            to,
            index=pr.snap_index,
            log_term=pr.snap_term,
            commit=self.committed,
            offset=pr.snap_offset,
            data=data,
            done=done,
        )

    # -- the log -----------------------------------------------------------------------------

    def _last_index(self) -> int:
        if self._u_entries:
            return self._u_entries[-1].index
        if self._u_snapshot is not None:
            return self._u_snapshot.index
        return self._storage.last_index()

    def _stable_last(self) -> int:
        if self._u_entries:
            return self._u_offset - 1
        return self._last_index()

    def _last_term(self) -> int:
        term = self._term(self._last_index())
        assert term is not None
        return term

    def _term(self, index: int) -> int | None:
        if self._u_entries and index >= self._u_offset:
            rel = index - self._u_offset
            return self._u_entries[rel].term if rel < len(self._u_entries) else None
        snap = self._u_snapshot
        if snap is not None:
            if index == snap.index:
                return snap.term
            return None
        if index >= self._u_offset:
            return None
        return self._storage.term_at(index)

    def _is_up_to_date(self, index: int, term: int) -> bool:
        last_term = self._last_term()
        return term > last_term or (term == last_term and index >= self._last_index())

    def _slice(self, lo: int, hi: int, bytes_max: int, count_max: int) -> list[Entry] | None:
        """Entries ``[lo, hi)``, at most ``count_max`` and (past the first) ``bytes_max``
        bytes; None when ``lo`` is compacted."""
        hi = min(hi, lo + count_max)
        if lo >= hi:
            return []
        out: list[Entry] = []
        budget = bytes_max
        if lo < self._u_offset:
            if self._u_snapshot is not None or lo < self._storage.first_index():
                return None
            stop = min(hi, self._u_offset)
            for i, (term, data) in enumerate(self._storage.entries(lo, stop, budget), lo):
                out.append(Entry(i, term, data))
                budget -= len(data)
            if len(out) < stop - lo:
                return out
            lo = stop
        for e in self._u_entries[lo - self._u_offset : hi - self._u_offset]:
            if out and len(e.data) > budget:
                break
            out.append(e)
            budget -= len(e.data)
        return out

    def _find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The last entry at or before ``index`` whose term is ``<= term`` (fast backtracking,
        §5.3): everything after it in a term above ``term`` cannot match the leader's log."""
        while index > 0:
            t = self._term(index)
            if t is None:
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    def _maybe_append(
        self, prev: int, prev_term: int, commit: int, ents: tuple[tuple[int, bytes], ...]
    ) -> int | None:
        if self._term(prev) != prev_term:
            return None  # §5.3: the entry before the new ones must match
        last_new = prev + len(ents)
        for k, (term, _) in enumerate(ents):
            index = prev + 1 + k
            if self._term(index) != term:
                assert index > self.committed, (
                    f"{self.id}: conflict at {index} at or below commit {self.committed}"
                )
                self._truncate_append(
                    [Entry(prev + 1 + j, t, d) for j, (t, d) in enumerate(ents[k:], k)]
                )
                break
        self._commit_to(min(commit, last_new))
        return last_new

    def _append_new(self, datas: Sequence[bytes]) -> None:
        index = self._last_index() + 1
        self._truncate_append([Entry(index + k, self.term, bytes(d)) for k, d in enumerate(datas)])

    def _truncate_append(self, ents: list[Entry]) -> None:
        first = ents[0].index
        assert first > self.committed or self._log_damaged, (first, self.committed)
        end = self._u_offset + len(self._u_entries)
        if first == end:
            self._u_entries.extend(ents)
        elif first <= self._u_offset:
            self._u_offset = first
            self._u_entries = list(ents)
        else:
            self._u_entries = self._u_entries[: first - self._u_offset] + ents
        self._u_bytes = sum(len(e.data) for e in self._u_entries)

    def _stable_to(self, index: int, term: int) -> None:
        if not self._u_entries or index < self._u_offset or self._term(index) != term:
            return
        keep = index + 1 - self._u_offset
        del self._u_entries[:keep]
        self._u_offset = index + 1
        self._u_bytes = sum(len(e.data) for e in self._u_entries)

    def _commit_to(self, index: int) -> None:
        if index > self.committed:
            assert index <= self._last_index(), (index, self._last_index())
            self.committed = index
            if self._log_damaged and (self._term(index) or 0) > self._damaged_term:
                # Rule 10: a committed entry of a newer term carries, by log matching, that
                # leader's whole prefix, and with it every entry committed before its term.
                self._log_damaged = False

    def _next_committed_bounds(self) -> tuple[int, int] | None:
        if self._u_snapshot is not None:
            return None
        hi = min(self.committed, self._stable_last())
        if hi <= self._applied:
            return None
        return self._applied + 1, hi + 1

    def _send(
        self,
        kind: MsgKind,
        to: str,
        *,
        index: int = 0,
        log_term: int = 0,
        commit: int = 0,
        entries: tuple[tuple[int, bytes], ...] = (),
        reject: bool = False,
        hint_index: int = 0,
        hint_term: int = 0,
        offset: int = 0,
        data: bytes = b"",
        done: bool = False,
        force: bool = False,
    ) -> None:
        self._msgs.append(
            Message(
                kind,
                to,
                self.id,
                self.term,
                index,
                log_term,
                commit,
                entries,
                reject,
                hint_index,
                hint_term,
                offset,
                data,
                done,
                force,
            )
        )
