"""Runs the seeded simulator under pytest: many seeds with the hash chain and with the broker
machine, replay determinism, and proof that the checkers catch a broken Raft core and a broken
broker machine."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from broker.core import commands as C
from broker.core.codec import decode_entry
from broker.core.machine import Machine
from storage.raft.core import MsgKind, RaftCore
from tests.sim.__main__ import _one, main
from tests.sim.broker import BrokerMachine, broker_config
from tests.sim.machine import chain
from tests.sim.sim import SimConfig, Simulation, run_seed

SEEDS = 240
FAULT_UNITS = 2_000  # per seed; tuned so SEEDS seeds take well under a minute
BROKER_SEEDS = 300
BROKER_FAULT_UNITS = 3_000  # tuned so BROKER_SEEDS seeds take about 35 s on two processes


def _cfg(seed: int) -> SimConfig:
    return SimConfig(nodes=5 if seed % 4 == 3 else 3, fault_units=FAULT_UNITS)


def test_many_seeds() -> None:
    t0 = time.perf_counter()
    failures = []
    for seed in range(SEEDS):
        try:
            run_seed(seed, _cfg(seed))
        except AssertionError as exc:
            failures.append(f"seed {seed} (python -m tests.sim --seed {seed}): {exc}")
    elapsed = time.perf_counter() - t0
    assert not failures, "\n".join(failures[:5])
    assert elapsed < 120, f"{SEEDS} seeds took {elapsed:.1f} s: retune FAULT_UNITS"


def test_many_broker_seeds() -> None:
    t0 = time.perf_counter()
    work = [(s, 5 if s % 4 == 3 else 3, "broker", BROKER_FAULT_UNITS) for s in range(BROKER_SEEDS)]
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(_one, work, chunksize=8))
    failures = [
        f"seed {seed} (python -m tests.sim --seed {seed} --machine broker --fault-units "
        f"{BROKER_FAULT_UNITS}):\n{error}"
        for seed, error in results
        if error is not None
    ]
    elapsed = time.perf_counter() - t0
    assert not failures, "\n".join(failures[:3])
    assert elapsed < 120, f"{BROKER_SEEDS} seeds took {elapsed:.1f} s: retune BROKER_FAULT_UNITS"


def test_a_broker_seed_replays_exactly() -> None:
    a = Simulation(7, broker_config(5, 1_500))
    b = Simulation(7, broker_config(5, 1_500))
    stats = a.run()
    assert stats == b.run()
    assert a.applied == b.applied and a.states == b.states
    assert stats["confirmed"] > 0 and stats["deliveries"] > 0 and stats["completed"] > 0


def test_a_seed_replays_exactly() -> None:
    a = Simulation(3, _cfg(3))
    b = Simulation(3, _cfg(3))
    assert a.run() == b.run()
    assert a.applied == b.applied


def test_cli_replays_one_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "5"]) == 0
    assert "seed 5: ok" in capsys.readouterr().out


def _first_failing_seed(seeds: int) -> int | None:
    for seed in range(seeds):
        try:
            run_seed(seed, _cfg(seed))
        except AssertionError:
            return seed
    return None


def test_checker_catches_two_votes_in_one_term(monkeypatch: pytest.MonkeyPatch) -> None:
    original = RaftCore._handle_vote_request

    def forgetful(self: RaftCore, m: object) -> None:
        if getattr(m, "kind", None) == MsgKind.VOTE and self.leader is None:
            self.vote = None  # the bug: forget who we voted for in this term
        original(self, m)  # type: ignore[arg-type]

    monkeypatch.setattr(RaftCore, "_handle_vote_request", forgetful)
    assert _first_failing_seed(50) is not None


def test_checker_catches_a_missing_up_to_date_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RaftCore, "_is_up_to_date", lambda self, index, term: True)
    assert _first_failing_seed(50) is not None


def _first_failing_broker_seed(
    seeds: int, before_seed: Callable[[SimConfig], None] | None = None
) -> tuple[int, str] | None:
    for seed in range(seeds):
        cfg = broker_config(3, 1_500)
        if before_seed is not None:
            before_seed(cfg)
        try:
            run_seed(seed, cfg)
        except AssertionError as exc:
            return seed, str(exc)
    return None


def test_checker_catches_a_settle_dropped_on_one_replica() -> None:
    made = [0]

    class OneBadReplica(BrokerMachine):
        """Every other machine made (n1's at the start) skips every other SETTLE COMPLETE but
        replies as if it had settled: the state comparison or a later reply sees it."""

        def __init__(self) -> None:
            super().__init__()
            made[0] += 1
            self.bad = made[0] % 2 == 1
            self.settles = 0

        def apply(self, index: int, term: int, data: bytes) -> Any:
            if self.bad and data:
                cmd = decode_entry(data)[1]
                if cmd[0] == C.SETTLE and cmd[2] == C.SETTLE_COMPLETE:
                    self.settles += 1
                    if self.settles % 2:  # the bug: replies as if settled, settles nothing
                        self._index = index
                        self._digest = chain(self._digest, data)
                        return len(cmd[3])
            return super().apply(index, term, data)

    def bad_replica(cfg: SimConfig) -> None:
        made[0] = 0
        cfg.make_machine = OneBadReplica

    found = _first_failing_broker_seed(20, bad_replica)
    assert found is not None
    assert "state machine safety" in found[1], found
    assert "state machine safety" in found[1] or "diverged" in found[1], found


def test_checker_catches_a_complete_that_requeues(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Machine._settle

    def requeue_instead(self: Machine, cmd: list[Any]) -> Any:
        if cmd[2] == C.SETTLE_COMPLETE and cmd[3]:
            # the bug: completed messages come back
            return original(self, [cmd[0], cmd[1], C.SETTLE_REQUEUE, cmd[3], 0])
        return original(self, cmd)

    monkeypatch.setattr(Machine, "_settle", requeue_instead)
    found = _first_failing_broker_seed(20)
    assert found is not None
    assert "duplicated" in found[1] or "delivered with count" in found[1], found
