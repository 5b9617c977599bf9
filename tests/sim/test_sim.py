"""Runs the seeded simulator under pytest: many seeds, replay determinism, and proof that the
checker catches a broken core."""

from __future__ import annotations

import time

import pytest

from storage.raft.core import MsgKind, RaftCore
from tests.sim.__main__ import main
from tests.sim.sim import SimConfig, Simulation, run_seed

SEEDS = 240
FAULT_UNITS = 2_000  # per seed; tuned so SEEDS seeds take well under a minute


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
