"""``/metrics`` of a real ``polymq serve``, scraped over HTTP after pika publishes, consumes,
acknowledges and rejects, and parsed with ``prometheus_client``'s own parser."""

from __future__ import annotations

import base64
import http.client
from collections.abc import Iterator

import pika
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.interop.mqtt_helpers import Client as MqttClient
from tests.polymq_process import PolymqProcess, unique

AUTH = "Basic " + base64.b64encode(b"guest:guest").decode()
HTTP_TIMEOUT_S = 10.0
#: (metric name, frozenset of label items) -> value
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolymqProcess]:
    proc = PolymqProcess(tmp_path_factory.mktemp("metrics"), listeners=("amqp", "mqtt"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def scrape(broker: PolymqProcess) -> tuple[Samples, dict[str, str]]:
    """Every sample, and the type of every family, from one GET /metrics."""
    conn = http.client.HTTPConnection(broker.host, broker.admin_port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.request("GET", "/metrics", headers={"authorization": AUTH})
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 200
        assert (resp.getheader("content-type") or "").startswith("text/plain; version=0.0.4")
    finally:
        conn.close()
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(body):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} not scraped"
    return samples[key]


def test_queue_counters_and_gauges(broker: PolymqProcess) -> None:
    work, dlq, dlx = unique("work"), unique("dlq"), unique("dlx")
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        ch = conn.channel()
        ch.exchange_declare(dlx, "fanout")
        ch.queue_declare(dlq, durable=True)
        ch.queue_bind(dlq, dlx)
        ch.queue_declare(work, durable=True, arguments={"x-dead-letter-exchange": dlx})
        ch.confirm_delivery()
        for i in range(6):
            ch.basic_publish("", work, b"%d" % i, pika.BasicProperties(delivery_mode=2))
        ch.basic_qos(prefetch_count=4)
        tags = []
        for method, _, _ in ch.consume(work, inactivity_timeout=HTTP_TIMEOUT_S):
            assert method is not None, "no delivery within the timeout"
            tags.append(method.delivery_tag)
            if len(tags) == 4:
                break
        ch.basic_ack(tags[1], multiple=True)  # two acknowledged: two more delivered
        ch.basic_reject(tags[2], requeue=False)  # one dead-lettered into dlq
        ch.queue_declare(work, passive=True)  # a round trip: the settles have been applied

        samples, types = scrape(broker)
        labels = {"vhost": "/", "queue": work}
        assert types["polymq_queue_messages_published"] == "counter"
        assert types["polymq_queue_messages_ready"] == "gauge"
        assert value(samples, "polymq_queue_messages_published_total", **labels) == 6
        assert value(samples, "polymq_queue_messages_delivered_total", **labels) == 6
        assert value(samples, "polymq_queue_messages_acknowledged_total", **labels) == 2
        assert (
            value(samples, "polymq_queue_messages_dead_lettered_total", reason="rejected", **labels)
            == 1
        )
        assert value(samples, "polymq_queue_messages_ready", **labels) == 0
        assert value(samples, "polymq_queue_messages_unacked", **labels) == 3
        assert value(samples, "polymq_queue_consumers", **labels) == 1
        dl = {"vhost": "/", "queue": dlq}
        assert value(samples, "polymq_queue_messages_published_total", **dl) == 1
        assert value(samples, "polymq_queue_messages_ready", **dl) == 1
        assert value(samples, "polymq_messages_published_total") >= 6
    finally:
        conn.close()


def test_connections_log_and_fsync_histogram(broker: PolymqProcess) -> None:
    before, _ = scrape(broker)
    conn = pika.BlockingConnection(pika.URLParameters(broker.url))
    mqtt = MqttClient(broker, client_id=unique("m").replace(".", "-"))
    mqtt.connect()
    try:
        ch = conn.channel()
        name = unique("durable")
        ch.queue_declare(name, durable=True)
        ch.confirm_delivery()
        ch.basic_publish("", name, b"x", pika.BasicProperties(delivery_mode=2))
        samples, types = scrape(broker)
        assert value(samples, "polymq_connections", protocol="amqp") >= 1
        assert value(samples, "polymq_connections", protocol="mqtt") >= 1
        assert (
            value(samples, "polymq_connections_opened_total", protocol="amqp")
            >= value(before, "polymq_connections_opened_total", protocol="amqp") + 1
        )
        # --fsync always: every confirmed publish waited for at least one fsync
        assert types["polymq_fsync_duration_seconds"] == "histogram"
        count = value(samples, "polymq_fsync_duration_seconds_count")
        assert count > value(before, "polymq_fsync_duration_seconds_count")
        assert value(samples, "polymq_fsync_duration_seconds_bucket", le="+Inf") == count
        assert value(samples, "polymq_fsync_duration_seconds_sum") > 0
        assert value(samples, "polymq_log_fsyncs_total") >= count
        assert value(samples, "polymq_applied_index") >= 2
        assert value(samples, "polymq_resource_alarm", alarm="memory") == 0
        # no Raft metrics on a single node
        assert not any(name.startswith("polymq_raft_") for name, _ in samples)
    finally:
        mqtt.disconnect()
        conn.close()
