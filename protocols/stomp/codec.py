"""STOMP 1.0, 1.1 and 1.2 frames to events and back, without I/O.

The decoder is fed raw bytes and returns :class:`Frame` and :class:`Heartbeat` events (light
NamedTuples). A frame is found with a handful of ``bytes.find`` calls and slices: the command
line, the blank line that ends the headers, then ``content-length`` octets and a NUL, or
everything up to the first NUL when there is no ``content-length``. The header block of a
frame is decoded once per distinct byte string (a bounded cache shared by every connection),
so a producer repeating the same headers pays for a dict lookup and a copy. Encoders return
bytes ready for the socket; :func:`encode_message`, the delivery hot path, keeps bounded
caches of escaped header lines.

Rules from the STOMP 1.2 specification ("[1.2 section]"), with the 1.0 and 1.1 differences:

* frame = command EOL *(header EOL) EOL *OCTET NUL *(EOL) [1.2 Augmented BNF]. EOL is
  CR-LF or LF in 1.2; in 1.0 and 1.1 it is LF, and a CR before it belongs to the header value.
  CR-LF is accepted after the command line in every version, and throughout CONNECT, STOMP
  and CONNECTED frames, which arrive before a version is agreed.
* EOLs between frames are heart-beats [1.2 Heart-beating]: one :class:`Heartbeat` per EOL.
* Header names and values are UTF-8 and, in 1.1 and 1.2, escaped: ``\\r`` (1.2 only),
  ``\\n``, ``\\c``, ``\\\\``; any other escape is a fatal protocol error [1.2 Value Encoding].
  CONNECT, STOMP and CONNECTED frames are never escaped, and 1.0 has no escaping at all.
* A header line is split at its first colon; a line without one or with an empty name is
  refused ("malformed header"). Repeated headers: the first entry wins [1.2 Repeated Header
  Entries].
* ``content-length`` is the number of body octets, NULs included; the frame must still end
  with a NUL right after them [1.2 Header content-length].
* Limits [1.2 Size Limits]: ``header_count_max`` headers per frame, ``header_bytes_max``
  bytes per header line, ``frame_bytes_max`` bytes per frame (command line to NUL). A frame
  that crosses ``frame_bytes_max`` is refused as soon as its ``content-length`` is read, or as
  soon as that many bytes are buffered without its end: the buffer never holds more than one
  limit's worth of an incomplete frame plus the last chunk fed.

Left to the processor: which commands a version allows (NACK and STOMP are 1.1+), required
headers, bodies on frames other than SEND/MESSAGE/ERROR (see :data:`BODY_COMMANDS`), and
ERROR frames carrying ``receipt-id``. :class:`StompError` carries the offending frame's
``receipt`` when its headers were decoded before the error.

Incomplete input is not re-scanned: the decoder records what would let the pending frame
progress (a number of bytes, or the arrival of an LF or a NUL) and :meth:`Decoder.feed` only
appends chunks until then, so a frame trickled in one byte at a time costs linear time.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

VERSIONS = ("1.0", "1.1", "1.2")
SUPPORTED_VERSIONS = ",".join(VERSIONS)
"""The value of the ``version`` header of an ERROR frame refusing a CONNECT."""

HEARTBEAT = b"\n"
"""What a server sends as a heart-beat."""

FRAME_BYTES_MAX_DEFAULT = 4 << 20
HEADER_COUNT_MAX_DEFAULT = 256
HEADER_BYTES_MAX_DEFAULT = 16 << 10
HEADER_CACHE_ENTRIES_MAX = 1024
"""Distinct header blocks remembered by the decoder (per escaping mode)."""
HEADER_CACHE_BLOCK_BYTES_MAX = 1024
HEADER_CACHE_LINES_MAX = 64
"""Header blocks larger than this (bytes, lines) are decoded every time, never cached. A
decoder whose own limits are below these does not use the shared cache at all."""
LINE_CACHE_ENTRIES_MAX = 4096
"""Escaped header lines remembered by :func:`encode_message` (per version and kind)."""

CLIENT_COMMANDS = frozenset(
    {
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "ACK",
        "NACK",
        "DISCONNECT",
        "CONNECT",
        "STOMP",
    }
)
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
BODY_COMMANDS = frozenset({"SEND", "MESSAGE", "ERROR"})
"""The only frames that may have a body [1.2 STOMP Frames]; the decoder does not enforce it."""
RAW_COMMANDS = frozenset({"CONNECT", "STOMP", "CONNECTED"})
"""Frames whose headers are never escaped, and which accept CR-LF in every version."""

_CLIENT_COMMAND_BYTES = {name.encode("ascii"): name for name in CLIENT_COMMANDS}
_ALL_COMMAND_BYTES = {name.encode("ascii"): name for name in CLIENT_COMMANDS | SERVER_COMMANDS}
_COMMAND_LINE_BYTES_MAX = max(map(len, CLIENT_COMMANDS | SERVER_COMMANDS)) + 1  # with a CR

# Escaping modes: index of the decoder caches and the encoder caches.
_RAW = 0  # 1.0: no escaping, LF
_RAW_CRLF = 1  # CONNECT / STOMP / CONNECTED: no escaping, CR-LF or LF
_ESC_11 = 2  # 1.1: \n \c \\, LF
_ESC_12 = 3  # 1.2: \r \n \c \\, CR-LF or LF
_MODES = {"1.0": _RAW, "1.1": _ESC_11, "1.2": _ESC_12}
_CRLF = (False, True, False, True)
_UNESCAPES: tuple[dict[str, str] | None, ...] = (
    None,
    None,
    {"n": "\n", "c": ":", "\\": "\\"},
    {"r": "\r", "n": "\n", "c": ":", "\\": "\\"},
)
_ESCAPE_11 = str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c"})
_ESCAPE_12 = str.maketrans({"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"})
_ESCAPES = (None, None, _ESCAPE_11, _ESCAPE_12)


class StompError(Exception):
    """A malformed frame or a limit crossed: the processor sends an ERROR frame with
    ``message`` (short, goes in the ``message`` header) and ``detail`` (body) and closes.

    When raised by :meth:`Decoder.events`, ``events`` holds the events decoded before the
    error in that call (handle them first), and ``receipt`` the ``receipt`` header of the
    offending frame when its headers could be read.
    """

    def __init__(self, message: str, detail: str = "", *, receipt: str | None = None) -> None:
        super().__init__(message, detail)
        self.message = message
        self.detail = detail
        self.receipt = receipt
        self.events: list[Frame | Heartbeat] = []

    def __str__(self) -> str:
        return f"{self.message}: {self.detail}" if self.detail else self.message


class Frame(NamedTuple):
    """A frame. ``headers`` are unescaped, first occurrence of a name wins; the dict is the
    frame's own (safe to mutate). ``body`` is a slice of the received bytes."""

    command: str
    headers: dict[str, str]
    body: bytes


class Heartbeat(NamedTuple):
    """An EOL received outside a frame."""


Event = Frame | Heartbeat

_HEARTBEAT_EVENT = Heartbeat()
_new_tuple = tuple.__new__
_K = TypeVar("_K")
_V = TypeVar("_V")


def _remember(cache: dict[_K, _V], key: _K, value: _V, entries_max: int) -> _V:
    """Store in a bounded cache; a full cache starts over. (Evicting the oldest entry with
    ``next(iter(cache))`` costs time in proportion to the deleted entries a dict keeps at
    its front: under churn it was 7 times slower than emptying the cache now and then.)"""
    if len(cache) >= entries_max:
        cache.clear()
    cache[key] = value
    return value


def _snippet(raw: bytes | str, size: int = 40) -> str:
    text = raw[:size]
    more = "..." if len(raw) > size else ""
    return f"{text!r}{more}"


# ---------------------------------------------------------------------------------------------
# Header values


def unescape(text: str, version: str = "1.2") -> str:
    """A header name or value as received in ``version`` -> its text. Raises StompError for an
    undefined escape sequence [1.2 Value Encoding]; 1.0 text is returned unchanged."""
    table = _UNESCAPES[_MODES[version]]
    return text if table is None else _unescape(text, table)


def _unescape(text: str, table: dict[str, str]) -> str:
    if "\\" not in text:
        return text
    parts = text.split("\\")
    out = [parts[0]]
    i = 1
    last = len(parts)
    while i < last:
        part = parts[i]
        if not part:  # an escaped backslash: the part after it is literal
            i += 1
            if i == last:
                raise StompError(
                    "invalid escape", f"header ends with a lone '\\': {_snippet(text)}"
                )
            out.append("\\")
            out.append(parts[i])
        else:
            char = table.get(part[0])
            if char is None:
                raise StompError(
                    "invalid escape",
                    f"undefined escape sequence '\\{part[0]}' in header {_snippet(text)}",
                )
            out.append(char)
            out.append(part[1:])
        i += 1
    return "".join(out)


def escape(text: str, version: str = "1.2") -> str:
    """A header name or value -> its wire form in ``version`` (1.0: unchanged)."""
    table = _ESCAPES[_MODES[version]]
    return text if table is None else text.translate(table)


def _escape(text: str, mode: int, what: str) -> str:
    table = _ESCAPES[mode]
    if table is not None:
        return text.translate(table)
    if "\n" in text or (mode == _RAW_CRLF and "\r" in text):
        raise ValueError(f"{what} {_snippet(text)} cannot be sent unescaped (line break)")
    return text


def _escape_name(name: str, mode: int) -> str:
    if not name:
        raise ValueError("empty header name")
    if _ESCAPES[mode] is None and ":" in name:
        raise ValueError(f"header name {_snippet(name)} cannot be sent unescaped (colon)")
    return _escape(name, mode, "header name")


def _content_length(raw: str, receipt: str | None) -> int:
    value = raw.strip(" \t")
    if not (value.isascii() and value.isdigit()):
        raise StompError(
            "invalid content-length",
            f"content-length {_snippet(raw)} is not a non-negative integer",
            receipt=receipt,
        )
    if len(value) > 18:
        return 1 << 62  # over any frame limit; keeps int() away from huge digit strings
    return int(value)


# ---------------------------------------------------------------------------------------------
# Decoder

_HEADER_WINDOW_BYTES = 512
"""How far the fast path looks for the end of the headers before the slow path takes over."""


def _blank_line(buf: bytes, eol: int, n: int, crlf: bool) -> tuple[int, int]:
    """``(position of the LF that ends the last header line, body position)`` of the first
    blank line after the command line's LF at ``eol``, or ``(-1, -1)``. The search widens
    eightfold per round so that a frame costs time in proportion to its own headers, not to
    the rest of the buffer."""
    width = 8 * _HEADER_WINDOW_BYTES
    while True:
        limit = min(n, eol + width)
        lf = buf.find(b"\n\n", eol, limit)
        if crlf:
            cr_lf = buf.find(b"\n\r\n", eol, limit if lf < 0 else lf + 2)
            if cr_lf >= 0:
                return cr_lf, cr_lf + 3
        if lf >= 0:
            return lf, lf + 2
        if limit >= n:
            return -1, -1
        width *= 8


_HeaderCache = dict[bytes, tuple[dict[str, str], int]]
_header_caches: tuple[_HeaderCache, ...] = ({}, {}, {}, {})
"""Per escaping mode: raw header block -> (headers, content-length or -1). Never mutate a
cached dict: frames get a copy."""
_NO_HEADERS: tuple[dict[str, str], int] = ({}, -1)
_no_caches: tuple[_HeaderCache, ...] = ({}, {}, {}, {})
"""Stand-in for decoders with limits below the cached blocks' sizes: always empty."""


class Decoder:
    """Incremental STOMP frame decoder for one connection.

    ``feed`` received bytes, then call ``events`` for the frames and heart-beats that are
    complete. ``version`` selects the escaping and EOL rules; it starts at "1.0" and is set
    by the decoder itself from a CONNECT or STOMP frame's
    ``accept-version`` (see :func:`negotiate_version`), so frames a client pipelines behind
    its CONNECT decode with the right rules; the processor may set it too (to the same value,
    or to narrow the versions it supports). A CONNECTED frame sets it from its ``version``
    header (client side, tests). Setting ``server_commands`` also accepts the frames a
    server sends (CONNECTED, MESSAGE, RECEIPT, ERROR), for tests and clients. The limits are
    plain attributes; they take effect at the next :meth:`events` call.

    Errors: :meth:`events` raises :class:`StompError` with the events decoded before it in
    the same call attached as ``exc.events`` (never lost, never returned twice). The decoder
    is then failed: later calls raise the same error with no events, and ``feed`` drops
    what it is given.
    """

    def __init__(
        self,
        *,
        frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
        header_count_max: int = HEADER_COUNT_MAX_DEFAULT,
        header_bytes_max: int = HEADER_BYTES_MAX_DEFAULT,
    ) -> None:
        self.frame_bytes_max = frame_bytes_max
        self.header_count_max = header_count_max
        self.header_bytes_max = header_bytes_max
        self._commands = _CLIENT_COMMAND_BYTES
        self._mode = _RAW
        self._version = "1.0"
        self._buf = b""
        self._pos = 0
        self._more: list[bytes] = []
        self._avail = 0  # bytes in self._buf[self._pos:] and self._more
        self._need = 1  # parse again once this many bytes are available...
        self._until: bytes | None = None  # ...or as soon as this byte arrives
        self._ready = False
        self._error: StompError | None = None

    @property
    def version(self) -> str:
        """ "1.0", "1.1" or "1.2": the escaping and EOL rules of frames other than CONNECT."""
        return self._version

    @version.setter
    def version(self, value: str) -> None:
        mode = _MODES.get(value)
        if mode is None:
            raise ValueError(f"unknown STOMP version {value!r}")
        self._version = value
        self._mode = mode

    @property
    def server_commands(self) -> bool:
        """Whether the frames a server sends (CONNECTED, MESSAGE, RECEIPT, ERROR) are accepted
        too: False for a server, True for clients and tests."""
        return self._commands is _ALL_COMMAND_BYTES

    @server_commands.setter
    def server_commands(self, value: bool) -> None:
        self._commands = _ALL_COMMAND_BYTES if value else _CLIENT_COMMAND_BYTES

    @property
    def buffered_bytes(self) -> int:
        """Bytes held waiting for a complete frame."""
        return self._avail

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if not data or self._error is not None:
            return
        if type(data) is not bytes:
            data = bytes(data)
        self._more.append(data)
        self._avail += len(data)
        if not self._ready and (
            self._avail >= self._need or (self._until is not None and self._until in data)
        ):
            self._ready = True

    def events(self) -> list[Event]:
        """Every complete frame and heart-beat, in order (see the class docstring on errors)."""
        if self._error is not None:
            self._error.events = []
            raise self._error
        if not self._ready:
            return []
        more = self._more
        if len(more) == 1 and self._pos >= len(self._buf):
            self._buf = more[0]
        else:
            self._buf = b"".join([self._buf[self._pos :], *more])
        more.clear()
        self._pos = 0
        self._ready = False
        out: list[Event] = []
        try:
            self._parse(out)
        except StompError as exc:
            exc.events = out
            self._error = exc
            self._buf = b""
            self._pos = 0
            self._avail = 0
            raise
        return out

    def _parse(self, out: list[Event]) -> None:
        buf = self._buf
        n = len(buf)
        pos = 0
        need = 1
        until: bytes | None = None
        commands = self._commands
        raw_commands = RAW_COMMANDS
        frame_max = self.frame_bytes_max
        mode = self._mode
        shared = (
            self.header_count_max >= HEADER_CACHE_LINES_MAX
            and self.header_bytes_max >= HEADER_CACHE_BLOCK_BYTES_MAX
        )
        caches = _header_caches if shared else _no_caches
        crlfs = _CRLF
        append = out.append
        heartbeat = _HEARTBEAT_EVENT
        new = _new_tuple
        frame = Frame
        while pos < n:
            c = buf[pos]
            if c == 10:
                append(heartbeat)
                pos += 1
                continue
            if c == 13:
                if pos + 1 == n:
                    need = 2
                    break
                if buf[pos + 1] == 10:
                    append(heartbeat)
                    pos += 2
                    continue
            eol = buf.find(b"\n", pos, pos + _COMMAND_LINE_BYTES_MAX + 1)
            if eol < 0:
                self._check_command_prefix(buf[pos : pos + _COMMAND_LINE_BYTES_MAX + 1])
                need = n - pos + 1
                break
            end = eol - 1 if eol > pos and buf[eol - 1] == 13 else eol
            command = commands.get(buf[pos:end])
            if command is None:
                raise StompError("unknown command", f"unknown command {_snippet(buf[pos:end])}")
            m = _RAW_CRLF if command in raw_commands else mode
            # The blank line after the headers: first look for the EOL style of the command
            # line within a short window, and make sure the other style does not end the
            # headers earlier; anything else (long headers, mixed EOLs) takes the slow path.
            if end == eol or not crlfs[m]:
                hend = buf.find(b"\n\n", eol, eol + _HEADER_WINDOW_BYTES)
                start = hend + 2
                if hend < 0 or (crlfs[m] and buf.find(b"\n\r\n", eol, hend + 2) >= 0):
                    hend, start = _blank_line(buf, eol, n, crlfs[m])
            else:
                hend = buf.find(b"\n\r\n", eol, eol + _HEADER_WINDOW_BYTES)
                start = hend + 3
                if hend < 0 or buf.find(b"\n\n", eol, hend + 1) >= 0:
                    hend, start = _blank_line(buf, eol, n, True)
            if hend < 0:
                need = self._check_partial_headers(buf, pos, eol, n)
                until = b"\n"
                break
            block = buf[eol + 1 : hend]
            cached = caches[m].get(block)
            if cached is None:
                cached = self._headers(block, m, shared)
            headers, length = cached
            if length >= 0:
                stop = start + length
                if stop - pos >= frame_max:
                    raise self._too_large(stop + 1 - pos, headers, known=True)
                if stop >= n:
                    need = stop + 1 - pos
                    break
                if buf[stop]:
                    raise StompError(
                        "malformed frame",
                        f"{command}: no NUL after the {length}-byte body given by "
                        f"content-length (found {_snippet(buf[stop : stop + 1])})",
                        receipt=headers.get("receipt"),
                    )
            else:
                stop = buf.find(b"\0", start, pos + frame_max)
                if stop < 0:
                    if n - pos > frame_max:
                        raise self._too_large(n - pos, headers, known=False)
                    need = frame_max + 1
                    until = b"\0"
                    break
            append(new(frame, (command, headers.copy(), buf[start:stop])))
            pos = stop + 1
            if m == _RAW_CRLF:
                self._set_version_from(command, headers)
                mode = self._mode
        if pos >= n:
            self._buf = b""
            self._pos = 0
            self._avail = 0
        else:
            self._pos = pos
            self._avail = n - pos
        self._need = need
        self._until = until

    def _check_command_prefix(self, partial: bytes) -> None:
        """Refuse an unfinished command line that cannot become a known command."""
        stem = partial[:-1] if partial[-1:] == b"\r" else partial
        if len(partial) > _COMMAND_LINE_BYTES_MAX or not any(
            name.startswith(stem) for name in self._commands
        ):
            raise StompError("unknown command", f"unknown command {_snippet(partial)}")

    def _check_partial_headers(self, buf: bytes, pos: int, eol: int, n: int) -> int:
        """Check the limits on headers still arriving; return the byte count (from the frame
        start) at which the current line or the frame would cross one."""
        frame_max = self.frame_bytes_max
        line_max = self.header_bytes_max
        if n - pos > frame_max:
            raise self._too_large(n - pos, None, known=False)
        line_start = buf.rfind(b"\n", eol, n) + 1
        if n - line_start > line_max:
            raise StompError("header too long", f"a header line is longer than {line_max} bytes")
        started = n > line_start and buf[line_start:n] != b"\r"  # a line that is not blank
        if buf.count(b"\n", eol + 1, n) + started > self.header_count_max:
            raise StompError(
                "too many headers", f"a frame has more than {self.header_count_max} headers"
            )
        if line_start > eol + 1:  # refuse a line without a colon now, not at the blank line
            for line in buf[eol + 1 : line_start - 1].split(b"\n"):
                if b":" not in line:
                    raise StompError(
                        "malformed header", f"header line without ':': {_snippet(line)}"
                    )
        return min(frame_max, line_start - pos + line_max) + 1

    def _headers(self, block: bytes, mode: int, shared: bool) -> tuple[dict[str, str], int]:
        """Decode and check a header block (the bytes between the command line and the blank
        line); remember it in the shared cache when ``shared`` and it is small."""
        if not block:
            return _NO_HEADERS
        count = block.count(b"\n") + 1
        if count > self.header_count_max:
            raise StompError(
                "too many headers",
                f"a frame has {count} headers, more than {self.header_count_max}",
            )
        line_max = self.header_bytes_max
        if len(block) > line_max and max(map(len, block.split(b"\n"))) > line_max:
            raise StompError("header too long", f"a header line is longer than {line_max} bytes")
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError:
            raise StompError("malformed header", "a header is not valid UTF-8") from None
        lines = text.split("\n")
        if _CRLF[mode] and "\r" in text:
            lines = [line[:-1] if line[-1:] == "\r" else line for line in lines]
        table = _UNESCAPES[mode] if "\\" in text else None
        headers: dict[str, str] = {}
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon:
                raise StompError("malformed header", f"header line without ':': {_snippet(line)}")
            if table is not None:
                name = _unescape(name, table)
                value = _unescape(value, table)
            if not name:
                raise StompError("malformed header", f"empty header name: {_snippet(line)}")
            if name not in headers:  # repeated: the first entry wins
                headers[name] = value
        raw = headers.get("content-length")
        if raw is None:
            length = -1
        elif raw.isdigit() and raw.isascii() and len(raw) <= 18:
            length = int(raw)
        else:
            length = _content_length(raw, headers.get("receipt"))
        result = (headers, length)
        if (
            shared
            and len(block) <= HEADER_CACHE_BLOCK_BYTES_MAX
            and count <= HEADER_CACHE_LINES_MAX
        ):
            _remember(_header_caches[mode], block, result, HEADER_CACHE_ENTRIES_MAX)
        return result

    def _too_large(self, size: int, headers: dict[str, str] | None, *, known: bool) -> StompError:
        what = "is" if known else "passes"
        return StompError(
            "frame too large",
            f"a frame of {size} bytes {what} over the limit of {self.frame_bytes_max}",
            receipt=None if headers is None else headers.get("receipt"),
        )

    def _set_version_from(self, command: str, headers: dict[str, str]) -> None:
        if command == "CONNECTED":
            version = headers.get("version", "1.0")
            if version in _MODES:
                self.version = version
            return
        agreed = negotiate_version(headers.get("accept-version"))
        if agreed is not None:
            self.version = agreed


# ---------------------------------------------------------------------------------------------
# Encoders


def encode_frame(
    command: str,
    headers: dict[str, str] | list[tuple[str, str]],
    body: bytes = b"",
    *,
    version: str = "1.2",
    content_length: bool = True,
) -> bytes:
    """Any frame. Header names and values are escaped for 1.1 and 1.2, except in CONNECT,
    STOMP and CONNECTED frames; ``content-length`` is added when ``body`` is not empty,
    ``content_length`` is true and ``headers`` have none. A list of pairs keeps repeated
    names (the peer uses the first). Raises ValueError for a header that cannot be sent
    unescaped (a line break, or a colon in a name) and for an empty header name."""
    mode = _RAW_CRLF if command in RAW_COMMANDS else _MODES.get(version)
    if mode is None:
        raise ValueError(f"unknown STOMP version {version!r}")
    items = headers.items() if isinstance(headers, dict) else headers
    parts = [command, "\n"]
    has_length = False
    for name, value in items:
        if name == "content-length":
            has_length = True
        parts += (_escape_name(name, mode), ":", _escape(value, mode, "header value"), "\n")
    if body and content_length and not has_length:
        parts.append(f"content-length:{len(body)}\n")
    parts.append("\n")
    return b"".join(("".join(parts).encode("utf-8"), body, b"\0"))


_message_heads: tuple[dict[str, bytes], ...] = ({}, {}, {}, {})
_subscription_lines: tuple[dict[str, bytes], ...] = ({}, {}, {}, {})
_message_lines: tuple[dict[tuple[str, str], bytes], ...] = ({}, {}, {}, {})
_length_lines: dict[int, bytes] = {}
_MESSAGE_FIXED = frozenset({"destination", "message-id", "subscription", "ack", "content-length"})


def _value(text: str, mode: int, what: str) -> bytes:
    """An escaped value, with a shortcut for the common text that needs no escaping."""
    if mode == _ESC_12:
        if "\\" in text or ":" in text or "\n" in text or "\r" in text:
            text = text.translate(_ESCAPE_12)
    elif "\\" in text or ":" in text or "\n" in text:
        text = _escape(text, mode, what)
    return text.encode("utf-8")


def _message_line(item: tuple[str, str], mode: int) -> bytes:
    name, value = item
    if name in _MESSAGE_FIXED or not name:
        line = b""
    elif mode == _RAW and (":" in name or "\n" in name or "\n" in value):
        line = b""  # 1.0 cannot carry it: dropped (documented on encode_message)
    else:
        line = b"".join((_value(name, mode, "name"), b":", _value(value, mode, "value"), b"\n"))
    return _remember(_message_lines[mode], item, line, LINE_CACHE_ENTRIES_MAX)


def encode_message(
    version: str,
    destination: str,
    subscription: str,
    message_id: str,
    ack: str | None,
    headers: dict[str, str],
    body: bytes,
) -> bytes:
    """A MESSAGE frame, the delivery hot path. Header order: ``destination``, ``message-id``,
    ``subscription``, ``ack`` (when not None: 1.2 client acknowledgement), the message's
    ``headers``, ``content-length`` (always). Names of ``headers`` that collide with those are
    skipped, and so, in 1.0 (no escaping), is a header with a line break in it or a colon in
    its name. Escaped lines are cached (bounded) per version: destination, subscription and
    each (name, value) pair of ``headers``. Raises ValueError for an unknown version, or in 1.0
    for a destination, subscription, message id or ack with a line break."""
    mode = _MODES[version]
    heads = _message_heads[mode]
    head = heads.get(destination)
    if head is None:
        head = b"".join(
            (b"MESSAGE\ndestination:", _value(destination, mode, "destination"), b"\nmessage-id:")
        )
        _remember(heads, destination, head, LINE_CACHE_ENTRIES_MAX)
    subs = _subscription_lines[mode]
    sub = subs.get(subscription)
    if sub is None:
        sub = b"".join((b"\nsubscription:", _value(subscription, mode, "subscription"), b"\n"))
        _remember(subs, subscription, sub, LINE_CACHE_ENTRIES_MAX)
    parts = [head, _value(message_id, mode, "message-id"), sub]
    if ack is not None:
        parts += (b"ack:", _value(ack, mode, "ack"), b"\n")
    if headers:
        lines = _message_lines[mode]
        for item in headers.items():
            line = lines.get(item)
            parts.append(_message_line(item, mode) if line is None else line)
    size = len(body)
    length = _length_lines.get(size)
    if length is None:
        length = f"content-length:{size}\n\n".encode("ascii")
        _remember(_length_lines, size, length, LINE_CACHE_ENTRIES_MAX)
    parts += (length, body, b"\0")
    return b"".join(parts)


# ---------------------------------------------------------------------------------------------
# Connection headers


def negotiate_version(accept_version: str | None) -> str | None:
    """The version to use for a CONNECT's ``accept-version`` header: "1.0" when it is absent,
    else the highest of 1.0, 1.1 and 1.2 the client lists, None when none is listed (the
    server then sends an ERROR frame with ``version`` set to :data:`SUPPORTED_VERSIONS`)
    [1.2 Protocol Negotiation]."""
    if accept_version is None:
        return "1.0"
    offered = {item.strip() for item in accept_version.split(",")}
    for version in reversed(VERSIONS):
        if version in offered:
            return version
    return None


def _milliseconds(text: str) -> int | None:
    text = text.strip(" \t")
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    return None


def parse_heart_beat(value: str | None) -> tuple[int, int]:
    """``(cx, cy)`` in milliseconds from a ``heart-beat`` header ("0,0" when absent)
    [1.2 Heart-beating]. Raises StompError when it is not two non-negative integers."""
    if value is None:
        return 0, 0
    first, comma, second = value.partition(",")
    cx = _milliseconds(first) if comma else None
    cy = _milliseconds(second) if comma else None
    if cx is None or cy is None:
        raise StompError(
            "invalid heart-beat",
            f"heart-beat {_snippet(value)} is not two non-negative integers 'cx,cy'",
        )
    return cx, cy
