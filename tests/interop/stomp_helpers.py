"""stomp.py clients for the STOMP interop suite, with a deadline on every wait.

``Client`` wraps one stomp.py ``Connection10`` / ``Connection11`` / ``Connection12`` whose
receiver runs in stomp.py's own thread. The listener only records frames (MESSAGE, RECEIPT,
ERROR, CONNECTED, heart-beats, the disconnect) under one condition variable; tests wait on
those with timeouts and never sleep for readiness. Bodies stay bytes (``auto_decode=False``).
Every SEND, SUBSCRIBE and UNSUBSCRIBE asks for a RECEIPT by default and waits for it, so a test
knows the broker has acted before it goes on.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import stomp
from stomp.utils import Frame

from tests.polymq_process import StompBroker

WAIT_S = 10.0
LOGIN, PASSCODE, VHOST = "guest", "guest", "/"
VERSIONS = ["1.0", "1.1", "1.2"]
CONNECTIONS: dict[str, type[stomp.Connection10 | stomp.Connection11 | stomp.Connection12]] = {
    "1.0": stomp.Connection10,
    "1.1": stomp.Connection11,
    "1.2": stomp.Connection12,
}


def unique_name(prefix: str) -> str:
    """A destination name no other test (or earlier run against a shared broker) has used; no
    ``.`` so that it is one word of a topic routing key."""
    return f"polymq-test-{prefix}-{uuid.uuid4().hex[:10]}"


class Recorder(stomp.ConnectionListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.messages: list[Frame] = []
        self.errors: list[Frame] = []
        self.receipts: set[str] = set()
        self.connected: Frame | None = None
        self.heartbeats = 0
        self.disconnected = False

    def _record(self, update: Callable[[], None]) -> None:
        with self.cond:
            update()
            self.cond.notify_all()

    def on_connected(self, frame: Frame) -> None:
        self._record(lambda: setattr(self, "connected", frame))

    def on_message(self, frame: Frame) -> None:
        self._record(lambda: self.messages.append(frame))

    def on_error(self, frame: Frame) -> None:
        self._record(lambda: self.errors.append(frame))

    def on_receipt(self, frame: Frame) -> None:
        self._record(lambda: self.receipts.add(frame.headers["receipt-id"]))

    def on_heartbeat(self) -> None:
        self._record(lambda: setattr(self, "heartbeats", self.heartbeats + 1))

    def on_disconnected(self) -> None:
        self._record(lambda: setattr(self, "disconnected", True))

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout=timeout):
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; messages="
                    f"{[(m.headers, m.body) for m in self.messages]} errors="
                    f"{[(e.headers, e.body) for e in self.errors]}"
                )


class Client:
    """One stomp.py connection to the broker under test (not connected until ``connect``)."""

    def __init__(
        self,
        broker: StompBroker,
        version: str = "1.2",
        heartbeats: tuple[int, int] = (0, 0),
    ) -> None:
        self.version = version
        cls = CONNECTIONS[version]
        kwargs: dict[str, Any] = {"auto_decode": False, "reconnect_attempts_max": 1}
        if version != "1.0":
            kwargs["vhost"] = VHOST
            kwargs["heartbeats"] = heartbeats
        self.conn = cls([(broker.host, broker.stomp_port)], **kwargs)
        self.rec = Recorder()
        self.conn.set_listener("recorder", self.rec)
        self.seen = 0  # messages already handed out by expect()

    # connection ----------------------------------------------------------------------------

    def connect(self, login: str = LOGIN, passcode: str = PASSCODE, **headers: str) -> Frame:
        """CONNECT (1.0: with ``host:/``; 1.1 and 1.2 send it from ``vhost``) and wait for
        CONNECTED."""
        if self.version == "1.0":
            headers.setdefault("host", VHOST)
        self.conn.connect(login, passcode, wait=True, headers=headers)
        self.rec.wait_for(lambda: self.rec.connected is not None, "CONNECTED")
        assert self.rec.connected is not None
        return self.rec.connected

    def disconnect(self) -> None:
        """DISCONNECT with a receipt (stomp.py waits for it), or just close a dead socket."""
        try:
            if self.conn.is_connected():
                self.conn.disconnect(receipt=f"bye-{uuid.uuid4().hex[:8]}")
        except Exception:
            pass
        finally:
            try:
                self.conn.transport.stop()
            except Exception:
                pass

    # frames ----------------------------------------------------------------------------------

    def _receipt(self, headers: dict[str, str], receipt: bool) -> str | None:
        if not receipt:
            return None
        rid = f"r-{uuid.uuid4().hex[:12]}"
        headers["receipt"] = rid
        return rid

    def wait_receipt(self, rid: str, timeout: float = WAIT_S) -> None:
        self.rec.wait_for(lambda: rid in self.rec.receipts, f"RECEIPT {rid}", timeout)

    def send(
        self, destination: str, body: bytes | str = b"", receipt: bool = True, **headers: str
    ) -> None:
        rid = self._receipt(headers, receipt)
        self.conn.send(destination, body, headers=headers)
        if rid:
            self.wait_receipt(rid)

    def subscribe(
        self,
        destination: str,
        sub_id: str | None = None,
        ack: str = "auto",
        receipt: bool = True,
        **headers: str,
    ) -> str:
        sub_id = sub_id or f"sub-{uuid.uuid4().hex[:8]}"
        rid = self._receipt(headers, receipt)
        self.conn.subscribe(destination, id=sub_id, ack=ack, headers=headers)
        if rid:
            self.wait_receipt(rid)
        return sub_id

    def unsubscribe(self, sub_id: str, receipt: bool = True, **headers: str) -> None:
        rid = self._receipt(headers, receipt)
        self.conn.unsubscribe(id=sub_id, headers=headers)
        if rid:
            self.wait_receipt(rid)

    def ack(self, message: Frame, transaction: str | None = None, receipt: bool = True) -> None:
        rid = f"r-{uuid.uuid4().hex[:12]}" if receipt else None
        h = message.headers
        if self.version == "1.2":
            self.conn.ack(h["ack"], transaction=transaction, receipt=rid)
        elif self.version == "1.1":
            self.conn.ack(h["message-id"], h["subscription"], transaction=transaction, receipt=rid)
        else:
            self.conn.ack(h["message-id"], transaction=transaction, receipt=rid)
        if rid:
            self.wait_receipt(rid)

    def nack(self, message: Frame, receipt: bool = True, **headers: str) -> None:
        assert self.version != "1.0", "NACK is STOMP 1.1 and later"
        rid = f"r-{uuid.uuid4().hex[:12]}" if receipt else None
        h = message.headers
        if self.version == "1.2":
            self.conn.nack(h["ack"], receipt=rid, **headers)
        else:
            self.conn.nack(h["message-id"], h["subscription"], receipt=rid, **headers)
        if rid:
            self.wait_receipt(rid)

    def begin(self) -> str:
        tx = f"tx-{uuid.uuid4().hex[:8]}"
        self.conn.begin(tx)
        return tx

    def commit(self, tx: str) -> None:
        rid = f"r-{uuid.uuid4().hex[:12]}"
        self.conn.commit(tx, headers={"receipt": rid})
        self.wait_receipt(rid)

    def abort(self, tx: str) -> None:
        rid = f"r-{uuid.uuid4().hex[:12]}"
        self.conn.abort(tx, headers={"receipt": rid})
        self.wait_receipt(rid)

    # waiting -----------------------------------------------------------------------------------

    def expect(self, count: int = 1, timeout: float = WAIT_S) -> list[Frame]:
        """The next ``count`` MESSAGE frames this client has not been handed yet."""
        want = self.seen + count
        self.rec.wait_for(
            lambda: len(self.rec.messages) >= want, f"{count} more MESSAGE frame(s)", timeout
        )
        with self.rec.cond:
            got = self.rec.messages[self.seen : want]
        self.seen = want
        return got

    def expect_none(self, quiet_s: float = 0.5) -> None:
        """No further MESSAGE frames arrive for ``quiet_s`` (the one wait that is for an absence:
        it is as long as the test's own assertion needs, never a readiness sleep)."""
        deadline = time.monotonic() + quiet_s
        with self.rec.cond:
            while (left := deadline - time.monotonic()) > 0:
                self.rec.cond.wait(left)
            extra = self.rec.messages[self.seen :]
        assert extra == [], [(m.headers, m.body) for m in extra]

    def expect_error(self, timeout: float = WAIT_S) -> Frame:
        self.rec.wait_for(lambda: bool(self.rec.errors), "an ERROR frame", timeout)
        return self.rec.errors[0]

    def wait_disconnected(self, timeout: float = WAIT_S) -> None:
        self.rec.wait_for(lambda: self.rec.disconnected, "the server to close", timeout)


def bodies(frames: list[Frame]) -> list[bytes]:
    return [bytes(f.body) for f in frames]
