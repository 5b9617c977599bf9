"""``python -m tests.sim --seed N`` replays one seed; ``--seeds N`` runs seeds 0..N-1.

``--machine broker`` runs the broker's state machine and workload (``tests/sim/broker.py``)
instead of the hash chain. A failing seed prints the command that replays it. ``--jobs`` runs
seeds in parallel processes.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor

from tests.sim.sim import SimConfig, run_seed

MACHINES = ("chain", "broker")


def make_config(machine: str, nodes: int, fault_units: int | None = None) -> SimConfig:
    """The configuration ``--machine`` names."""
    if machine == "broker":
        from tests.sim.broker import broker_config

        cfg = broker_config(nodes)
    else:
        cfg = SimConfig(nodes=nodes)
    if fault_units is not None:
        cfg.fault_units = fault_units
    return cfg


def _one(args: tuple[int, int, str, int | None]) -> tuple[int, str | None]:
    seed, nodes, machine, fault_units = args
    try:
        run_seed(seed, make_config(machine, nodes, fault_units))
    except Exception:
        return seed, traceback.format_exc()
    return seed, None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--seed", type=int, help="replay this one seed, verbosely")
    group.add_argument("--seeds", type=int, default=100, help="run seeds [start, start+N)")
    ap.add_argument("--start", type=int, default=0, help="first seed for --seeds")
    ap.add_argument("--nodes", type=int, default=0, help="3 or 5; default: 5 for every 4th seed")
    ap.add_argument("--jobs", type=int, default=1, help="worker processes for --seeds")
    ap.add_argument(
        "--machine", choices=MACHINES, default="chain", help="state machine (default: chain)"
    )
    ap.add_argument("--fault-units", type=int, default=None, help="length of the fault phase")
    args = ap.parse_args(argv)

    def nodes_for(seed: int) -> int:
        return args.nodes or (5 if seed % 4 == 3 else 3)

    def replay(seed: int) -> str:
        extra = f" --machine {args.machine}" if args.machine != "chain" else ""
        if args.nodes:
            extra += f" --nodes {args.nodes}"
        if args.fault_units is not None:
            extra += f" --fault-units {args.fault_units}"
        return f"python -m tests.sim --seed {seed}{extra}"

    if args.seed is not None:
        t0 = time.perf_counter()
        try:
            stats = run_seed(
                args.seed, make_config(args.machine, nodes_for(args.seed), args.fault_units)
            )
        except Exception:
            _report(args.seed, traceback.format_exc(), replay(args.seed))
            return 1
        print(f"seed {args.seed}: ok in {time.perf_counter() - t0:.3f} s {stats}")
        return 0
    t0 = time.perf_counter()
    work = [
        (s, nodes_for(s), args.machine, args.fault_units)
        for s in range(args.start, args.start + args.seeds)
    ]
    failures = 0
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = pool.map(_one, work, chunksize=16)
            for seed, error in results:
                failures += _report(seed, error, replay(seed))
    else:
        for seed, error in map(_one, work):
            failures += _report(seed, error, replay(seed))
    elapsed = time.perf_counter() - t0
    print(
        f"{len(work)} seeds, {failures} failed, {elapsed:.1f} s "
        f"({len(work) / elapsed:.1f} seeds/s with {args.jobs} job(s))"
    )
    return 1 if failures else 0


def _report(seed: int, error: str | None, replay: str) -> int:
    if error is None:
        return 0
    print(f"FAIL seed {seed}: replay with: {replay}", file=sys.stderr)
    print(error, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
