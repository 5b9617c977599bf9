"""Celery over the broker: a real worker process consumes tasks sent with ``.delay()`` and the
results come back over the ``rpc://`` backend (a reply queue per client, direct reply)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.polymq_process import ROOT, AmqpBroker, unique

WORKER_STOP_TIMEOUT_S = 20


@pytest.fixture
def celery_queue(amqp_broker: AmqpBroker, tmp_path: Path) -> Iterator[str]:
    queue = unique("celery")
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "POLYMQ_CELERY_BROKER_URL": amqp_broker.url,
        "POLYMQ_CELERY_QUEUE": queue,
        "PYTHONWARNINGS": "ignore",
    }
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tests.interop.celery_app",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",
                "-Q",
                queue,
                "-n",
                f"{queue}@localhost",
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield queue
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)  # warm shutdown
            try:
                worker.wait(timeout=WORKER_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=WORKER_STOP_TIMEOUT_S)
        sys.stderr.write(log_path.read_text(errors="replace")[-4000:])


def test_celery_worker_runs_tasks_and_returns_results(
    amqp_broker: AmqpBroker, celery_queue: str
) -> None:
    from tests.interop import celery_app

    app = celery_app.app
    app.conf.broker_url = amqp_broker.url
    app.conf.task_default_queue = celery_queue
    try:
        results = [celery_app.add.delay(i, 10 * i) for i in range(5)]
        assert [r.get(timeout=30) for r in results] == [11 * i for i in range(5)]
        assert all(r.successful() for r in results)
    finally:
        app.close()
