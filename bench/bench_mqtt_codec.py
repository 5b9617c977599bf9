"""Per-message CPU of the MQTT codec's PUBLISH fast paths on one core.

Rows: decoding a stream of QoS 0 PUBLISH packets (topic "bench/topic/1", 256-byte payload,
MQTT 3.1.1 and 5.0) fed in 64 KB chunks; encoding QoS 0 and QoS 1 PUBLISH packets of the
same message. Prints µs/message (best of ``--repeat`` runs).

    python bench/bench_mqtt_codec.py [--messages 200000] [--repeat 5]
"""

from __future__ import annotations

import time
from functools import partial

from common import best, chunks, codec_options, feed_all, print_per_message

from protocols.mqtt.codec import MQTT_3_1_1, MQTT_5, Decoder, encode_publish

TOPIC = "bench/topic/1"
PAYLOAD = b"x" * 256


def decode_run(version: int, pieces: list[bytes], expect: int) -> float:
    return feed_all(Decoder(version=version), pieces, expect)


def encode_run(version: int, qos: int, n: int) -> float:
    topic, payload = TOPIC, PAYLOAD
    start = time.perf_counter()
    if qos:
        for pid in range(1, n + 1):
            encode_publish(version, topic, payload, 1, False, False, pid & 0xFFFF or 1)
    else:
        for _ in range(n):
            encode_publish(version, topic, payload, 0, False, False, None)
    return time.perf_counter() - start


def main() -> None:
    opts = codec_options(__doc__)
    n = opts.messages
    rows: list[tuple[str, float]] = []
    for version, label in ((MQTT_3_1_1, "3.1.1"), (MQTT_5, "5.0")):
        packet = encode_publish(version, TOPIC, PAYLOAD, 0, False, False, None)
        pieces = chunks(packet * n)
        secs = best(partial(decode_run, version, pieces, n), opts.repeat)
        rows.append((f"decode PUBLISH QoS 0 ({label}, 64 KB chunks)", secs))
    for version, label in ((MQTT_3_1_1, "3.1.1"), (MQTT_5, "5.0")):
        for qos in (0, 1):
            secs = best(partial(encode_run, version, qos, n), opts.repeat)
            rows.append((f"encode PUBLISH QoS {qos} ({label})", secs))
    print_per_message(rows, n)


if __name__ == "__main__":
    main()
