"""Child process for test_log_crash: appends self-checking records until it is killed.

Usage: ``python tests/unit/logcrash_child.py DIR SEGMENT_BYTES_MAX``. Prints ``ready LAST``
once the log is open and the committer runs, then ``c INDEX`` each time the commit index
advances; every index up to a printed one was fsynced before the line was written.
"""

from __future__ import annotations

import hashlib
import os
import random
import struct
import sys

import trio

from storage.commit import GroupCommitter
from storage.log import SegmentedLog

PROPOSERS = 16
FILLER_BYTES_MAX = 300
_SEQ = struct.Struct("<Q")


def make_record(seq: int, rng: random.Random) -> bytes:
    filler = rng.randbytes(rng.randrange(FILLER_BYTES_MAX + 1))
    head = _SEQ.pack(seq)
    return head + hashlib.blake2b(head + filler, digest_size=16).digest() + filler


def record_ok(data: bytes) -> bool:
    if len(data) < 24:
        return False
    head, digest, filler = data[:8], data[8:24], data[24:]
    return hashlib.blake2b(head + filler, digest_size=16).digest() == digest


async def main(directory: str, segment_bytes_max: int) -> None:
    log = SegmentedLog.open(directory, segment_bytes_max=segment_bytes_max)
    committer = GroupCommitter(log, fsync="always")
    rng = random.Random()
    run_id = rng.getrandbits(32)

    async def proposer(n: int) -> None:
        seq = 0
        while True:
            seq += 1
            await committer.append(make_record((run_id << 32) | (n << 24) | seq, rng))

    async def reporter() -> None:
        printed = committer.commit_index
        while True:
            printed = await committer.wait_commit_beyond(printed)
            os.write(1, b"c %d\n" % printed)

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        nursery.start_soon(reporter)
        os.write(1, b"ready %d\n" % log.last_index)
        for n in range(PROPOSERS):
            nursery.start_soon(proposer, n)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
