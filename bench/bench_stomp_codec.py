"""Per-message CPU of the STOMP codec's hot paths on one core.

Rows: decoding a stream of SEND frames (destination /queue/bench, content-type, persistent,
content-length, 256-byte body; STOMP 1.2, LF and CR-LF, and 1.0) fed in 64 KB chunks, with
and without a distinct receipt header per frame (no header-block cache hits); encoding the
MESSAGE frames of the same message (1.2 with an ack header, 1.1, with and without message
headers). Prints µs/message (best of ``--repeat`` runs).

    python bench/bench_stomp_codec.py [--messages 200000] [--repeat 5]
"""

from __future__ import annotations

import time
from functools import partial

from common import best, chunks, codec_options, feed_all, print_per_message

from protocols.stomp.codec import Decoder, encode_frame, encode_message

DESTINATION = "/queue/bench"
BODY = b"x" * 256
SEND_HEADERS = {"destination": DESTINATION, "content-type": "text/plain", "persistent": "true"}
MESSAGE_HEADERS = {"content-type": "text/plain", "persistent": "true", "priority": "4"}


def send_stream(version: str, n: int, *, crlf: bool, receipts: bool) -> bytes:
    if not receipts:
        frame = encode_frame("SEND", SEND_HEADERS, BODY, version=version)
        if crlf:
            head, _, rest = frame.partition(b"\n\n")
            frame = head.replace(b"\n", b"\r\n") + b"\r\n\r\n" + rest
        return frame * n
    return b"".join(
        encode_frame("SEND", {**SEND_HEADERS, "receipt": f"r-{i}"}, BODY, version=version)
        for i in range(n)
    )


def decode_run(version: str, pieces: list[bytes], expect: int) -> float:
    dec = Decoder()
    dec.version = version
    return feed_all(dec, pieces, expect)


def encode_run(version: str, ack: bool, headers: dict[str, str], n: int) -> float:
    encode = encode_message
    body = BODY
    start = time.perf_counter()
    for i in range(n):
        message_id = f"T_sub-0@@session-1@@{i}"
        encode(
            version, DESTINATION, "sub-0", message_id, message_id if ack else None, headers, body
        )
    return time.perf_counter() - start


def id_run(n: int) -> float:
    """The cost of building the message id alone, subtracted from the encode rows."""
    start = time.perf_counter()
    for i in range(n):
        f"T_sub-0@@session-1@@{i}"  # noqa: B018
    return time.perf_counter() - start


def main() -> None:
    opts = codec_options(__doc__)
    n = opts.messages
    rows: list[tuple[str, float]] = []
    for version, crlf, receipts, label in (
        ("1.2", False, False, "1.2"),
        ("1.2", True, False, "1.2, CR-LF"),
        ("1.0", False, False, "1.0"),
        ("1.2", False, True, "1.2, a distinct receipt per frame"),
    ):
        pieces = chunks(send_stream(version, n, crlf=crlf, receipts=receipts))
        secs = best(partial(decode_run, version, pieces, n), opts.repeat)
        rows.append((f"decode SEND ({label}, 64 KB chunks)", secs))
    ids = best(partial(id_run, n), opts.repeat)
    for version, ack, headers, label in (
        ("1.2", True, {}, "1.2, ack header"),
        ("1.2", True, MESSAGE_HEADERS, "1.2, ack header, 3 message headers"),
        ("1.1", False, MESSAGE_HEADERS, "1.1, 3 message headers"),
    ):
        secs = best(partial(encode_run, version, ack, headers, n), opts.repeat) - ids
        rows.append((f"encode MESSAGE ({label})", secs))
    print_per_message(rows, n)


if __name__ == "__main__":
    main()
