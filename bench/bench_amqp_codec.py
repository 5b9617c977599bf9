"""Per-message CPU of the AMQP 0-9-1 codec's fast paths on one core.

Rows: decoding a stream of basic.publish + content header + body frames (256-byte body,
props {delivery_mode: 2, content_type: "text/plain"}) fed in 64 KB chunks; encoding
deliveries of the same message; decoding basic.ack frames fed in 64 KB chunks. Prints
µs/message (best of ``--repeat`` runs).

    python bench/bench_amqp_codec.py [--messages 200000] [--repeat 5]
"""

from __future__ import annotations

import struct
import time

from common import best, chunks, codec_options, feed_all

from protocols.amqp091.codec import (
    PROTOCOL_HEADER,
    Decoder,
    encode_deliver,
    encode_properties,
)

BODY = b"x" * 256
PROPS = {"delivery_mode": 2, "content_type": "text/plain"}
FRAME_MAX = 131072


def publish_frames(channel: int, exchange: str, routing_key: str) -> bytes:
    ex, rk = exchange.encode(), routing_key.encode()
    args = struct.pack(">HHH", 60, 40, 0) + bytes([len(ex)]) + ex + bytes([len(rk)]) + rk + b"\0"
    method = struct.pack(">BHI", 1, channel, len(args)) + args + b"\xce"
    raw_props = encode_properties(PROPS)
    head = struct.pack(">HHQ", 60, 0, len(BODY)) + raw_props
    header = struct.pack(">BHI", 2, channel, len(head)) + head + b"\xce"
    body = struct.pack(">BHI", 3, channel, len(BODY)) + BODY + b"\xce"
    return method + header + body


def ack_frame(channel: int, tag: int) -> bytes:
    return struct.pack(">BHIHHQB", 1, channel, 13, 60, 80, tag, 0) + b"\xce"


def decode_run(pieces: list[bytes], expect: int) -> float:
    dec = Decoder(frame_max=FRAME_MAX)
    dec.feed(PROTOCOL_HEADER)
    assert dec.header_received()
    return feed_all(dec, pieces, expect)


def encode_run(n: int) -> float:
    props = PROPS
    start = time.perf_counter()
    for tag in range(1, n + 1):
        encode_deliver(1, "ctag-1", tag, False, "amq.direct", "bench.key", props, BODY, FRAME_MAX)
    return time.perf_counter() - start


def main() -> None:
    opts = codec_options(__doc__)
    n = opts.messages

    pubs = chunks(publish_frames(1, "amq.direct", "bench.key") * n)
    acks = chunks(b"".join(ack_frame(1, tag) for tag in range(1, n + 1)))

    rows = [
        ("decode publish (method+header+body)", best(lambda: decode_run(pubs, n), opts.repeat)),
        ("encode deliver (method+header+body)", best(lambda: encode_run(n), opts.repeat)),
        ("decode basic.ack", best(lambda: decode_run(acks, n), opts.repeat)),
    ]
    print(f"{n} messages, 256-byte body, 64 KB chunks, best of {opts.repeat}")
    for name, seconds in rows:
        print(f"{name:40s} {seconds / n * 1e6:6.3f} µs/message")


if __name__ == "__main__":
    main()
