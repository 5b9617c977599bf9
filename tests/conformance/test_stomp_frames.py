"""STOMP frames by hand over a raw socket, named by the sections of the STOMP 1.2 specification
(stomp.github.io/stomp-specification-1.2.html): connecting and version negotiation, frame
syntax, value encoding and escaping, repeated headers, size limits, heart-beating, and hostile
input.

"ERROR" section: after an ERROR frame the server MUST close the connection. polymq does, after
every ERROR. RabbitMQ 3.10 closes after some (``not_found``) but leaves the connection open
after others (``Bad command``, ``Illegal command``, ``Version mismatch``) and closes without an
ERROR on frames it cannot parse; where the spec gives a reference that freedom the test accepts
it (``expect_error_then_close`` / ``expect_rejected``), and polymq is held to ERROR-then-close.

Every test runs inside the STOMP witness (``stomp_witness`` in conftest.py): messages stored
before are intact and a well-behaved stomp.py client still sends and receives afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.conformance import stomp_wire as w
from tests.conformance.stomp_wire import Frame, RawClient
from tests.polymq_process import StompBroker

Raw = Callable[..., RawClient]


@pytest.fixture(autouse=True)
def witness(stomp_witness: None) -> Iterator[None]:
    """The STOMP witness instead of the AMQP one."""
    yield


def unique_queue(prefix: str) -> str:
    from tests.interop.stomp_helpers import unique_name

    return f"/queue/{unique_name(prefix)}"


def expect_error_then_close(
    broker: StompBroker, client: RawClient, message: str | None = None, timeout: float = 5.0
) -> Frame:
    """An ERROR frame (with ``message`` as its message header when given), then the server
    closes. A reference may leave the connection open after the ERROR."""
    if broker.is_polymq:
        frames = client.read_until_closed(timeout)
    else:
        frames, _ = client.read_frames_for(min(timeout, 1.5))
    assert frames and frames[0].command == "ERROR", frames
    error = frames[0]
    assert error.header("message"), error.headers
    if message is not None:
        assert error["message"] == message, error.headers
    assert [f.command for f in frames] == ["ERROR"], frames
    return error


def expect_rejected(broker: StompBroker, client: RawClient, timeout: float = 5.0) -> None:
    """A malformed frame: polymq sends ERROR (with a message header) and closes; a reference
    may close without the ERROR (RabbitMQ does)."""
    frames = client.read_until_closed(timeout)
    if broker.is_polymq or frames:
        assert [f.command for f in frames] == ["ERROR"], frames
        assert frames[0].header("message"), frames[0].headers


def still_works(client: RawClient) -> None:
    """The connection is alive: a receipted frame is answered."""
    client.send(
        w.frame(
            "SUBSCRIBE", {"destination": unique_queue("alive"), "id": "alive", "receipt": "alive"}
        )
    )
    reply = client.read_frame()
    assert (reply.command, reply.header("receipt-id")) == ("RECEIPT", "alive"), reply


# --- Connecting / Protocol Negotiation --------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "version"),
    [("1.0,1.1,1.2", "1.2"), ("1.2,1.0", "1.2"), ("1.0,1.1", "1.1"), ("1.1", "1.1")],
)
def test_negotiation_picks_highest_common_version(
    stomp_raw: Raw, accept: str, version: str
) -> None:
    client = stomp_raw()
    connected = client.handshake(accept)
    assert connected["version"] == version
    assert connected.header("session") and connected.header("server")


def test_negotiation_without_accept_version_is_1_0(stomp_raw: Raw) -> None:
    """No accept-version: STOMP 1.0; CONNECTED may omit the version header."""
    client = stomp_raw()
    client.send(w.frame("CONNECT", {"login": w.LOGIN, "passcode": w.PASSCODE, "host": w.VHOST}))
    connected = client.read_frame()
    assert connected.command == "CONNECTED", connected
    assert connected.header("version") in (None, "1.0"), connected.headers


def test_stomp_command_connects_like_connect(stomp_raw: Raw) -> None:
    client = stomp_raw()
    client.send(
        w.frame(
            "STOMP",
            {"accept-version": "1.2", "host": w.VHOST, "login": w.LOGIN, "passcode": w.PASSCODE},
        )
    )
    assert client.read_frame()["version"] == "1.2"


def test_negotiation_failure_is_error_with_supported_versions(
    stomp_raw: Raw, stomp_broker: StompBroker
) -> None:
    """accept-version 2.0 only: ERROR naming the supported versions in a ``version`` header
    (RabbitMQ: ``message:Version mismatch``, ``version:1.0,1.1,1.2``)."""
    client = stomp_raw()
    client.send(w.connect("2.0"))
    error = expect_error_then_close(stomp_broker, client, "Version mismatch")
    assert error["version"].split(",") == ["1.0", "1.1", "1.2"]


def test_wrong_passcode_is_error(stomp_raw: Raw, stomp_broker: StompBroker) -> None:
    client = stomp_raw()
    client.send(w.connect(passcode="not-the-password"))
    expect_error_then_close(stomp_broker, client, "Bad CONNECT")


def test_connect_headers_are_not_unescaped(stomp_raw: Raw, stomp_broker: StompBroker) -> None:
    """1.2 "Value Encoding": CONNECT and CONNECTED frames do not escape, so a backslash that
    would be an undefined escape elsewhere is just a character here and polymq connects.
    RabbitMQ 3.10 does unescape CONNECT headers and closes (no ERROR) on ``\\q``: accepted
    from a reference only."""
    client = stomp_raw()
    client.send(w.connect(x_note="back\\qslash\\"))
    if stomp_broker.is_polymq:
        assert client.read_frame().command == "CONNECTED"
        still_works(client)
    else:
        try:
            frames = [client.read_frame()]
        except w.Closed:
            frames = []
        assert [f.command for f in frames] in ([], ["CONNECTED"], ["ERROR"]), frames


def test_undefined_escape_is_a_protocol_error(stomp_raw: Raw, stomp_broker: StompBroker) -> None:
    """1.2 "Value Encoding": an undefined escape such as ``\\t`` MUST be treated as a fatal
    protocol error."""
    client = stomp_raw()
    client.handshake("1.2")
    dest = unique_queue("badescape").encode()
    client.send(b"SEND\ndestination:" + dest + b"\nx-bad:a\\tb\n\nx\x00")
    expect_rejected(stomp_broker, client)


# --- Frames: bad commands and malformed frames ----------------------------------------------

GARBAGE_FIRST = [
    pytest.param(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00", id="http-request"),
    pytest.param(b"HELLO\n\n\x00", id="unknown-command"),
    pytest.param(b"SEND\ndestination:/queue/x\n\nbefore-connect\x00", id="send-before-connect"),
]


@pytest.mark.parametrize("first", GARBAGE_FIRST)
def test_first_frame_not_connect_is_error(
    stomp_raw: Raw, stomp_broker: StompBroker, first: bytes
) -> None:
    """Before CONNECT only CONNECT / STOMP are legal (RabbitMQ: ``message:Illegal command``)."""
    client = stomp_raw()
    client.send(first)
    error = expect_error_then_close(stomp_broker, client)
    if not stomp_broker.is_polymq:
        assert error["message"] == "Illegal command", error.headers


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 8, id="tls"),
        pytest.param(b"AMQP\x00\x00\x09\x01", id="amqp-header"),
        pytest.param(b"\xff" * 64 + b"\n\n\x00", id="not-utf8"),
    ],
)
def test_binary_garbage_first_is_rejected(
    stomp_raw: Raw, stomp_broker: StompBroker, first: bytes
) -> None:
    client = stomp_raw()
    client.send(first)
    if stomp_broker.is_polymq:
        expect_rejected(stomp_broker, client)
    else:
        frames, _ = client.read_frames_for(1.5)
        assert all(f.command == "ERROR" for f in frames), frames


def test_unknown_command_after_connect_is_error(stomp_raw: Raw, stomp_broker: StompBroker) -> None:
    """RabbitMQ: ``message:Bad command``, body ``Could not interpret command "HELLO"``."""
    client = stomp_raw()
    client.handshake()
    client.send(b"HELLO\n\n\x00")
    error = expect_error_then_close(stomp_broker, client, "Bad command")
    assert b"HELLO" in error.body


def test_header_line_without_colon_is_rejected(stomp_raw: Raw, stomp_broker: StompBroker) -> None:
    client = stomp_raw()
    client.handshake()
    client.send(b"SEND\ndestination:" + unique_queue("nocolon").encode() + b"\nnocolon\n\nx\x00")
    expect_rejected(stomp_broker, client)


def test_content_length_then_no_nul_is_rejected(stomp_raw: Raw, stomp_broker: StompBroker) -> None:
    """The octet after content-length bytes MUST be NUL."""
    client = stomp_raw()
    client.handshake()
    dest = unique_queue("nonul").encode()
    client.send(b"SEND\ndestination:" + dest + b"\ncontent-length:2\n\nhiX\x00")
    expect_rejected(stomp_broker, client)


def test_content_length_not_a_number_is_rejected(stomp_raw: Raw, stomp_broker: StompBroker) -> None:
    client = stomp_raw()
    client.handshake()
    dest = unique_queue("badlen").encode()
    client.send(b"SEND\ndestination:" + dest + b"\ncontent-length:abc\n\nhi\x00")
    expect_rejected(stomp_broker, client)


def test_half_a_frame_then_close_leaves_nothing_behind(stomp_raw: Raw) -> None:
    """A frame without its terminating NUL is not a frame: the server drops it when the client
    goes, and nothing is delivered."""
    dest = unique_queue("half")
    client = stomp_raw()
    client.handshake()
    client.send(w.frame("SEND", {"destination": dest}, b"never-complete")[:-1])
    client.close()

    reader = stomp_raw()
    reader.handshake()
    reader.send(w.frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "sub"}))
    reader.send(w.frame("SEND", {"destination": dest}, b"complete"))
    frames = [reader.read_frame(), reader.read_frame()]
    assert [f.command for f in frames] == ["RECEIPT", "MESSAGE"], frames
    assert frames[1].body == b"complete"


def test_body_with_nul_octets_needs_content_length(stomp_raw: Raw) -> None:
    dest = unique_queue("nulbody")
    client = stomp_raw()
    client.handshake()
    client.send(w.frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "sub"}))
    assert client.read_frame().command == "RECEIPT"
    body = b"a\x00b\x00\x00c"
    client.send(w.frame("SEND", {"destination": dest}, body, content_length=True))
    message = client.read_frame()
    assert message.command == "MESSAGE" and message.body == body
    assert message["content-length"] == str(len(body))


def test_crlf_line_endings_are_accepted(stomp_raw: Raw) -> None:
    """1.2 "Augmented BNF": EOL is ``[CR] LF``."""
    dest = unique_queue("crlf")
    client = stomp_raw()
    client.handshake()
    client.send(
        f"SUBSCRIBE\r\ndestination:{dest}\r\nid:s\r\nreceipt:crlf\r\n\r\n".encode() + b"\x00"
    )
    assert client.read_frame()["receipt-id"] == "crlf"


# --- Value Encoding / Repeated Header Entries ----------------------------------------------


def test_1_2_header_escaping_round_trips(stomp_raw: Raw) -> None:
    """``\\c`` ``\\n`` ``\\r`` ``\\\\`` in a custom header decode to ``:`` LF CR ``\\`` and are
    escaped again on the MESSAGE."""
    dest = unique_queue("escape")
    client = stomp_raw()
    client.handshake("1.2")
    client.send(w.frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "sub"}))
    assert client.read_frame().command == "RECEIPT"
    value = "a:b\nc\\d\re"
    client.send(w.frame("SEND", {"destination": dest, "x-escaped": value}, b"x", escaped=True))
    message = client.read_frame()
    assert message.command == "MESSAGE"
    raw_value = message["x-escaped"]
    assert raw_value == w.escape(value), raw_value
    assert w.unescape(raw_value) == value


def test_1_1_header_escaping_round_trips(stomp_raw: Raw) -> None:
    """1.1 escapes ``\\c`` ``\\n`` ``\\\\`` (no ``\\r``)."""
    dest = unique_queue("escape11")
    client = stomp_raw()
    client.handshake("1.1")
    client.send(w.frame("SUBSCRIBE", {"destination": dest, "id": "s", "receipt": "sub"}))
    assert client.read_frame().command == "RECEIPT"
    client.send(b"SEND\ndestination:" + dest.encode() + b"\nx-escaped:a\\cb\\nc\\\\d\n\nx\x00")
    message = client.read_frame()
    assert w.unescape(message["x-escaped"]) == "a:b\nc\\d"


def test_repeated_header_first_entry_wins(stomp_raw: Raw) -> None:
    """1.2 "Repeated Header Entries": only the first occurrence counts -- for routing
    (destination) and for what the subscriber sees (a custom header)."""
    first, second = unique_queue("first"), unique_queue("second")
    client = stomp_raw()
    client.handshake()
    client.send(w.frame("SUBSCRIBE", {"destination": first, "id": "s", "receipt": "sub"}))
    assert client.read_frame().command == "RECEIPT"
    client.send(
        w.frame(
            "SEND",
            [("destination", first), ("destination", second), ("x-dup", "one"), ("x-dup", "two")],
            b"dup",
        )
    )
    message = client.read_frame()
    assert message.command == "MESSAGE" and message.body == b"dup"
    assert message["destination"] == first
    assert message["x-dup"] == "one", message.headers


# --- Size Limits ---------------------------------------------------------------------------


def test_content_length_beyond_the_frame_limit_is_rejected_at_once(
    stomp_raw: Raw, stomp_broker: StompBroker
) -> None:
    """A declared content-length of 100 MB, far over ``stomp_frame_bytes_max``: ERROR and close
    before any of the body arrives."""
    stomp_broker.require("frame-limit")
    client = stomp_raw()
    client.handshake()
    dest = unique_queue("toolong").encode()
    client.send(b"SEND\ndestination:" + dest + b"\ncontent-length:100000000\n\nhi")
    expect_error_then_close(stomp_broker, client)


def test_oversize_frame_is_error_and_close_without_buffering_it(
    stomp_raw: Raw, stomp_broker: StompBroker
) -> None:
    """32 MiB of body and no NUL: ERROR and close once the frame limit (4 MiB by default) is
    crossed; the server does not hold the whole body (its RSS grows by well under that: the
    frame buffer and its copies, not 32 MiB)."""
    stomp_broker.require("frame-limit")
    client = stomp_raw()
    client.handshake()
    rss_before = stomp_broker.rss_bytes() if stomp_broker.is_polymq else 0
    client.send(b"SEND\ndestination:" + unique_queue("huge").encode() + b"\n\n")
    chunk = b"z" * 65536
    sent = 0
    try:
        while sent < 32 * 1024 * 1024:
            client.send(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the server closed mid-stream: what we want
    if stomp_broker.is_polymq:
        growth = stomp_broker.rss_bytes() - rss_before
        assert growth < 16 * 1024 * 1024, f"RSS grew by {growth} bytes"
    try:
        frames = client.read_until_closed()
    except ConnectionError:
        frames = []
    if frames:
        assert frames[0].command == "ERROR" and frames[0].header("message"), frames


# --- Heart-beating -------------------------------------------------------------------------


def test_server_sends_heart_beats_when_asked(stomp_raw: Raw) -> None:
    """heart-beat:0,1000 asks for a beat every second: CONNECTED offers sx > 0 and EOLs come."""
    client = stomp_raw()
    connected = client.handshake(heart_beat="0,1000")
    server_send, _ = (int(x) for x in connected["heart-beat"].split(","))
    assert 0 < server_send <= 1000, connected.headers
    deadline = time.monotonic() + 5
    while client.heartbeats < 2:
        assert time.monotonic() < deadline, f"only {client.heartbeats} heart-beats in 5 s"
        try:
            client._fill(min(deadline, time.monotonic() + 1.5))
        except TimeoutError:
            continue
        while client.buf[:1] == b"\n":
            client.heartbeats += 1
            client.buf = client.buf[1:]
        assert client.buf == b"", client.buf


def test_silent_client_that_promised_heart_beats_is_closed(stomp_raw: Raw) -> None:
    """heart-beat:1000,0 then silence: the server gives up within a few seconds (2-3 s for a
    1 s promise; the spec lets it allow some tolerance)."""
    client = stomp_raw()
    connected = client.handshake(heart_beat="1000,0")
    _, server_wants = (int(x) for x in connected["heart-beat"].split(","))
    assert server_wants > 0, connected.headers
    start = time.monotonic()
    frames = client.read_until_closed(timeout=max(6.0, server_wants * 4 / 1000))
    elapsed = time.monotonic() - start
    assert all(f.command == "ERROR" for f in frames), frames
    assert 0.9 < elapsed < 4.5, elapsed


def test_client_heart_beats_keep_the_connection(stomp_raw: Raw) -> None:
    client = stomp_raw()
    client.handshake(heart_beat="500,0")
    for _ in range(6):  # 3 s of beats, each well inside the server's tolerance
        client.send(b"\n")
        time.sleep(0.5)
    still_works(client)
