"""State-machine apply rate for publish + settle pairs on one core.

One durable queue with one consumer; each round applies a PUBLISH of ``batch``
persistent 256-byte messages (logged metas), then one SETTLE COMPLETE of the ids
delivered by it. Prints pairs/s per batch size, and the same with every command
encoded and decoded (as the log and replicas do) as a separate row.

    python bench/bench_apply.py [--seconds 1.0] [--prefetch 0]
"""

from __future__ import annotations

import argparse
import time

from broker.core import commands as C
from broker.core.codec import decode_entry, encode_entry
from broker.core.machine import Machine
from broker.core.model import Meta

BODY = b"x" * 256
PROPS = {"delivery_mode": 2}


def run(batch: int, seconds: float, prefetch: int, codec: bool) -> float:
    m = Machine()
    index = 1
    m.apply(Meta(index, 1, 0), C.cmd_declare_queue("/", "q"))
    index += 1
    m.apply(Meta(index, 1, 0), C.cmd_consume(1, "/", "q", "c", prefetch=prefetch))
    msgs = [C.msg("q", BODY, PROPS) for _ in range(batch)]
    pairs = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = 0
    while True:
        index += 1
        now += 1
        pub = C.cmd_publish("/", "", msgs)
        if codec:
            now, pub = decode_entry(encode_entry(now, pub))
        _, effects = m.apply(Meta(index, 1, now), pub)
        ids = [d[0] for e in effects for d in e[4]]
        settle = C.cmd_settle(1, C.SETTLE_COMPLETE, ids)
        if codec:
            now, settle = decode_entry(encode_entry(now, settle))
        index += 1
        reply, _ = m.apply(Meta(index, 1, now), settle)
        assert reply == batch, reply
        pairs += batch
        if time.perf_counter() >= deadline:
            break
    return pairs / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--prefetch", type=int, default=0)
    args = ap.parse_args()
    print(f"{'batch':>6} {'apply pairs/s':>15} {'with codec pairs/s':>20}")
    for batch in (1, 64, 512):
        plain = run(batch, args.seconds, args.prefetch, codec=False)
        coded = run(batch, args.seconds, args.prefetch, codec=True)
        print(f"{batch:>6} {plain:>15,.0f} {coded:>20,.0f}")


if __name__ == "__main__":
    main()
