"""The management page in headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven with selenium): a real polymq with queues made by pika and connections of every
protocol; the page must render the queues with their depths, a connection per protocol and
the node. Without Chromium the test skips, except in CI (``CI`` set), where it fails."""

from __future__ import annotations

import http.client
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from tests.interop.mqtt_helpers import Client as MqttClient
from tests.interop.stomp_helpers import Client as StompClient
from tests.polymq_process import PolymqProcess, unique

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGE_WAIT_S = 30.0
HTTP_TIMEOUT_S = 10.0
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)


def _require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        reason = f"headless Chromium is not installed ({', '.join(missing)} missing)"
        if os.environ.get("CI"):
            pytest.fail(reason + "; .ci/run installs chromium and chromium-driver")
        pytest.skip(reason + ": apt-get install chromium chromium-driver")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PolymqProcess]:
    proc = PolymqProcess(tmp_path / "data", listeners=("amqp", "mqtt", "stomp", "http"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_page_renders_nodes_queues_and_connections(browser: Any, broker: PolymqProcess) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    deep, shallow = unique("deep"), unique("shallow")
    amqp = pika.BlockingConnection(pika.URLParameters(broker.url))
    mqtt = MqttClient(broker, client_id=unique("page").replace(".", "-"))
    stomp = StompClient(broker)
    aws = http.client.HTTPConnection(broker.host, broker.http_port, timeout=HTTP_TIMEOUT_S)
    try:
        ch = amqp.channel()
        ch.confirm_delivery()
        for name, n in ((deep, 3), (shallow, 1)):
            ch.queue_declare(name, durable=True)
            for i in range(n):
                ch.basic_publish("", name, b"%d" % i, pika.BasicProperties(delivery_mode=2))
        mqtt.connect()
        stomp.connect()
        aws.request("GET", "/")
        aws.getresponse().read()

        url = f"http://127.0.0.1:{broker.admin_port}/?refresh=1"
        browser.get(url)
        # credentials for a node that asks for a management user (ignored otherwise)
        browser.execute_script("sessionStorage.setItem('polymq.auth', btoa('guest:guest'))")
        browser.get(url)
        wait = WebDriverWait(browser, PAGE_WAIT_S)
        wait.until(lambda d: d.execute_script("return document.body.dataset.loaded === 'true'"))

        def cell(queue: str, field: str) -> str:
            found = browser.find_elements(
                By.CSS_SELECTOR, f'tr[data-queue="{queue}"] td[data-field="{field}"]'
            )
            return str(found[0].text) if found else ""

        wait.until(lambda d: cell(deep, "messages_ready") == "3")
        assert cell(deep, "messages") == "3" and cell(deep, "consumers") == "0"
        assert cell(shallow, "messages_ready") == "1"

        def count(protocol: str) -> int:
            found = browser.find_elements(
                By.CSS_SELECTOR, f'#connection-counts li[data-protocol="{protocol}"] .count'
            )
            return int(found[0].text) if found else 0

        for protocol in ("amqp", "mqtt", "stomp", "http"):
            wait.until(lambda d, p=protocol: count(p) >= 1)
            rows = browser.find_elements(
                By.CSS_SELECTOR, f'#connections tr[data-protocol="{protocol}"]'
            )
            assert rows, protocol

        node = browser.find_element(By.CSS_SELECTOR, 'tr[data-node="polymq@localhost"]')
        assert "polymq@localhost" in node.text and "single" in node.text
        assert "leader: polymq@localhost" in browser.find_element(By.ID, "leader").text
        assert browser.find_element(By.ID, "alarms").text == "none"
        screenshot = os.environ.get("POLYMQ_TEST_SCREENSHOT")
        if screenshot:
            browser.save_screenshot(screenshot)

        # the page follows the broker: a message taken away shows on a later refresh
        method, _, _ = ch.basic_get(shallow)
        assert method is not None
        ch.basic_ack(method.delivery_tag)
        wait.until(lambda d: cell(shallow, "messages_ready") == "0")
    finally:
        aws.close()
        stomp.disconnect()
        mqtt.disconnect()
        amqp.close()
