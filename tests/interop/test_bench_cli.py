"""``polymq bench`` as users run it: a real ``polymq bench`` process against a real
``polymq serve``, for every protocol; the JSON summary's numbers must add up (with
persistent messages and confirms, every confirmed message consumed exactly once)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.polymq_process import ROOT, PolymqProcess, server_env

BENCH_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolymqProcess]:
    proc = PolymqProcess(
        tmp_path_factory.mktemp("bench"), listeners=("amqp", "mqtt", "stomp", "http")
    )
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", "bench", *args],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def bench_json(*args: str) -> dict[str, Any]:
    out = bench(*args, "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    assert result["errors"] == []
    return result


def check_sane(r: dict[str, Any], confirmed: bool) -> None:
    assert r["published"] > 0 and r["consumed"] == r["published"], r
    assert r["missing"] == 0 and r["duplicates"] == 0 and r["nacked"] == 0
    assert r["sent"] >= r["published"]
    if confirmed:
        assert r["sent"] == r["published"]
    assert r["publish_rate"] > 0 and r["consume_rate"] > 0
    lat = r["latency_us"]
    assert 1 <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert lat["mean"] > 0


def test_amqp_persistent_confirm_loses_nothing(broker: PolymqProcess) -> None:
    r = bench_json(
        "amqp",
        "--url",
        broker.url,
        "--duration",
        "2",
        "--producers",
        "2",
        "--consumers",
        "2",
        "--persistent",
        "--confirm",
    )
    assert (r["protocol"], r["producers"], r["consumers"], r["size"]) == ("amqp", 2, 2, 256)
    assert r["persistent"] and r["confirm"] and r["duration_s"] >= 2
    check_sane(r, confirmed=True)


def test_amqp_rate_limited_summary(broker: PolymqProcess) -> None:
    out = bench("amqp", "--url", broker.url, "--duration", "1", "--rate", "500", "--size", "64")
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert text.startswith("polymq bench amqp: 1 producers, 1 consumers, 64 B, 500 msg/s")
    for word in ("published", "consumed", "msg/s", "latency us", "p50", "p99.9"):
        assert word in text
    published = int(text.split("published")[1].split()[0])
    assert 0 < published <= 500 * 1.5 + 32  # paced: about the rate for the duration


@pytest.mark.parametrize(
    ("protocol", "extra"),
    [
        ("mqtt", ("--qos", "1", "--confirm", "--consumers", "2")),
        (
            "mqtt",
            (
                "--qos",
                "0",
            ),
        ),
        ("stomp", ("--persistent", "--confirm")),
        ("sqs", ()),
    ],
)
def test_other_protocols(broker: PolymqProcess, protocol: str, extra: tuple[str, ...]) -> None:
    url = {
        "mqtt": broker.mqtt_url,
        "stomp": f"stomp://guest:guest@{broker.host}:{broker.stomp_port}",
        "sqs": broker.http_url,
    }[protocol]
    r = bench_json(protocol, "--url", url, "--duration", "1", *extra)
    confirmed = "--confirm" in extra or protocol == "sqs"
    check_sane(r, confirmed=confirmed)


def test_progress_bar_on_request(broker: PolymqProcess) -> None:
    out = bench("amqp", "--url", broker.url, "--duration", "1", "--rate", "100", "--progress")
    assert out.returncode == 0, out.stderr
    assert "[" in out.stderr and "published" in out.stderr and "/1 s" in out.stderr


def test_bad_arguments_and_unreachable_broker() -> None:
    out = bench("amqp", "--size", "4")
    assert out.returncode == 2 and "--size" in out.stderr
    out = bench("mqtt", "--qos", "0", "--confirm")
    assert out.returncode == 2 and "--qos 1" in out.stderr
    out = bench("nats")
    assert out.returncode == 2
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = bench("amqp", "--url", f"amqp://guest:guest@127.0.0.1:{port}/", "--duration", "1")
    assert out.returncode == 1 and "error:" in out.stdout
