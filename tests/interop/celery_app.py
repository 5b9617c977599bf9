"""The Celery application of the Celery interop test. The worker subprocess imports it with
``celery -A tests.interop.celery_app worker``; the broker URL and the queue come from the
environment so that the worker and the test agree on both."""

from __future__ import annotations

import os

from celery import Celery

BROKER_ENV = "POLYMQ_CELERY_BROKER_URL"
QUEUE_ENV = "POLYMQ_CELERY_QUEUE"

app = Celery("polymq_interop")
app.conf.update(
    broker_url=os.environ.get(BROKER_ENV, "amqp://guest:guest@127.0.0.1:5672/"),
    result_backend="rpc://",
    task_default_queue=os.environ.get(QUEUE_ENV, "polymq-interop-celery"),
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=3,
    broker_connection_timeout=10,
    worker_hijack_root_logger=False,
    result_expires=60,
)


@app.task(name="polymq_interop.add")
def add(x: int, y: int) -> int:
    return x + y
