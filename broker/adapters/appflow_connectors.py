"""The connectors of polymq's AppFlow: where a flow run reads records and where it writes them.

Each connector stands for one of the connector types of botocore's ``appflow`` model (the
mapping is in ``protocols/aws/README.md``):

======================  ==============================  ======================================
model connector type    polymq resource                 use
======================  ==============================  ======================================
``S3``                  a directory under the AppFlow   source (CSV or JSON lines files) and
                        root (``appflow_root_dir``):    destination (CSV or JSON lines, file
                        ``bucketName`` is a directory,  aggregation ``None``/``SingleFile``,
                        ``bucketPrefix`` a key prefix   date/time prefixes)
``EventBridge``         an event bus (``object``)       destination (one event per record)
``CustomConnector``     ``polymq-sqs``: an SQS queue    source and destination
                        ``polymq-sns``: an SNS topic    destination
                        ``polymq-http``: an HTTP JSON   source (paginated)
                        API (``baseUrl`` property)
                        ``polymq-sql``: a database      source (incremental by a watermark
                        through SQLAlchemy (SQLite by   column) and destination (INSERT,
                        default)                        UPSERT, UPDATE)
======================  ==============================  ======================================

A source yields :class:`Batch` es of records (dicts); the run writes each batch to the
destination and then calls the batch's ``ack`` (an SQS source deletes the messages only then,
so a run that fails leaves them in the queue for the next one). A destination's ``write``
returns what it wrote and what it could not; ``finish(ok)`` publishes its files (written under
a temporary name until the run succeeds) or removes them.

Blocking work (files, SQLAlchemy) runs in worker threads, one batch per call.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import io
import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import trio

from broker.adapters import http_client
from broker.adapters.errors import ServiceError
from broker.api import COMPLETE, REQUEUE, SERVICE_SESSION_BASE, Broker, BrokerError

#: The service session that holds the messages an SQS source has taken and not yet written.
APPFLOW_SESSION = SERVICE_SESSION_BASE + 31
VHOST = "/"

BATCH_RECORDS = 1_000
#: how long an SQS source's messages stay invisible to others while a run writes them
SQS_SOURCE_LEASE_MS = 300_000
SQS_PUBLISH_BATCH = 1_000
SNS_BATCH = 10
EVENTS_BATCH = 10
EVENT_SOURCE = "polymq.appflow"
HTTP_PAGES_MAX = 10_000
HTTP_PAGE_BYTES_MAX = 8 << 20
HTTP_TIMEOUT_S = 30.0
HTTP_PAGE_SIZE_DEFAULT = 100
LINE_BYTES_MAX = 1 << 20
FILE_BYTES_MAX = 8 << 30
CSV_FIELD_CHARS_MAX = 1 << 20
TARGET_FILE_MB_MAX = 10_240
SQL_TIMEOUT_S = 10.0

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$")
FILE_TYPES = ("CSV", "JSON")
PREFIX_FORMATS = {"YEAR": 1, "MONTH": 2, "DAY": 3, "HOUR": 4, "MINUTE": 5}

CUSTOM_LABELS = ("polymq-sqs", "polymq-sns", "polymq-http", "polymq-sql")


class ConnectorError(Exception):
    """A connector cannot go on; ``code`` names the AppFlow error kind (for the run's message:
    ``ConnectorAuthenticationException``, ``ConnectorServerException``, ``ValidationException``)."""

    def __init__(self, message: str, code: str = "ConnectorServerException") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def validation(message: str) -> ServiceError:
    return ServiceError("ValidationException", message, status=400)


def jsonable(value: Any) -> Any:
    """A value that JSON can carry: dates as ISO 8601, decimals as numbers, bytes as base64."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)


# -- watermarks -------------------------------------------------------------------------------


def watermark_out(value: Any) -> dict[str, Any] | None:
    """How a watermark value is stored (in the flow's metadata)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return {"type": "datetime", "value": value.isoformat()}
    if isinstance(value, dt.date):
        return {"type": "date", "value": value.isoformat()}
    if isinstance(value, bool):
        return {"type": "str", "value": str(value)}
    if isinstance(value, int):
        return {"type": "int", "value": value}
    if isinstance(value, float | decimal.Decimal):
        return {"type": "float", "value": float(value)}
    return {"type": "str", "value": str(value)}


def watermark_in(stored: dict[str, Any] | None) -> Any:
    if not stored:
        return None
    kind, value = stored.get("type"), stored.get("value")
    if kind == "datetime":
        return dt.datetime.fromisoformat(str(value))
    if kind == "date":
        return dt.date.fromisoformat(str(value))
    return value


def watermark_text(value: Any) -> str:
    return jsonable(value) if isinstance(value, dt.date) else str(value)


# -- what a run gives its connectors ----------------------------------------------------------


@dataclass
class RunContext:
    flow: str
    execution_id: str
    started_ms: int
    root: Path
    broker: Broker
    sqs: Any  # SqsAdapter
    sns: Any  # SnsAdapter
    events: Any  # EventsAdapter
    #: source fields a PROJECTION filter pulls, or None for every field
    projection: tuple[str, ...] | None = None
    #: incremental pull: the watermark field, the last run's watermark (None on the first
    #: run) and the lower bound of the first run (epoch ms, firstExecutionFrom)
    watermark_field: str | None = None
    watermark: Any = None
    first_from_ms: int | None = None


@dataclass
class Batch:
    records: list[dict[str, Any]]
    bytes: int = 0
    errors: list[str] = field(default_factory=list)  # records the source could not read
    ack: Callable[[], Awaitable[None]] | None = None
    nack: Callable[[], Awaitable[None]] | None = None


@dataclass
class Written:
    count: int = 0
    bytes: int = 0
    failures: int = 0
    failure_samples: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.failures += 1
        if len(self.failure_samples) < 5:
            self.failure_samples.append(message)


class Source:
    #: the source applies the incremental watermark itself (else the run filters records)
    pushes_down_watermark = False
    #: the highest watermark value the source saw (when it pushes the watermark down)
    new_watermark: Any = None

    def batches(self) -> AsyncIterator[Batch]:
        raise NotImplementedError

    async def close(self, ok: bool) -> None:
        """Called once after the run, ``ok`` when it succeeded."""


class Destination:
    async def write(self, records: list[dict[str, Any]]) -> Written:
        raise NotImplementedError

    async def finish(self, ok: bool) -> None:
        """Called once after the run, ``ok`` when it succeeded."""


# -- paths ------------------------------------------------------------------------------------


def check_bucket(bucket: str, prefix: str, what: str) -> None:
    if not BUCKET_RE.match(bucket) or ".." in bucket:
        raise validation(
            f"{what} bucketName {bucket!r} is not valid: 3 to 63 lower-case letters, digits, "
            "'.', '-' or '_' (a directory under the AppFlow root)"
        )
    parts = prefix.replace("\\", "/").split("/")
    if any(p in ("..", ".") for p in parts) or prefix.startswith("/"):
        raise validation(f"{what} bucketPrefix {prefix!r} must not contain '.' or '..' segments")


def bucket_dir(root: Path, bucket: str) -> Path:
    path = (root / bucket).resolve()
    if root.resolve() not in path.parents:
        raise ConnectorError(f"bucket {bucket} is outside the AppFlow root", "ValidationException")
    return path


def _in_thread(fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
    return trio.to_thread.run_sync(fn, *args)


# -- S3: a local directory --------------------------------------------------------------------


class DirSource(Source):
    """Every file of ``bucketName`` whose key (path under the bucket, ``/``-separated) starts
    with ``bucketPrefix``, in key order; files whose name starts with ``.`` are skipped (the
    destination writes its unfinished files so). CSV files have a header row; JSON files hold
    one JSON object per line."""

    def __init__(self, ctx: RunContext, props: dict[str, Any]) -> None:
        self.ctx = ctx
        self.bucket = str(props["bucketName"])
        self.prefix = str(props.get("bucketPrefix") or "")
        fmt = props.get("s3InputFormatConfig") or {}
        self.file_type = str(fmt.get("s3InputFileType") or "CSV")

    def _keys(self) -> list[tuple[str, Path]]:
        base = bucket_dir(self.ctx.root, self.bucket)
        if not base.is_dir():
            raise ConnectorError(f"bucket {self.bucket} does not exist under the AppFlow root")
        out: list[tuple[str, Path]] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                key = path.relative_to(base).as_posix()
                if key.startswith(self.prefix):
                    out.append((key, path))
        out.sort()
        return out

    async def batches(self) -> AsyncIterator[Batch]:
        keys = await _in_thread(self._keys)
        for key, path in keys:
            reader = _FileReader(path, key, self.file_type)
            try:
                while True:
                    batch = await _in_thread(reader.read, BATCH_RECORDS)
                    if batch is None:
                        break
                    yield batch
            finally:
                reader.close()


class _FileReader:
    def __init__(self, path: Path, key: str, file_type: str) -> None:
        self.key = key
        self.file_type = file_type
        self.line = 0
        self.done = False
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ConnectorError(f"cannot read {key}: {exc.strerror}") from None
        if size > FILE_BYTES_MAX:
            raise ConnectorError(f"{key} is over {FILE_BYTES_MAX} bytes")
        self.f: io.BufferedReader = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.text = io.TextIOWrapper(self.f, encoding="utf-8-sig", newline="")
        self.csv: Any = None
        self.header: list[str] | None = None
        self.pos = 0

    def close(self) -> None:
        self.text.close()

    def read(self, n: int) -> Batch | None:
        if self.done:
            return None
        records: list[dict[str, Any]] = []
        errors: list[str] = []
        try:
            if self.file_type == "CSV":
                self._read_csv(n, records, errors)
            else:
                self._read_json(n, records, errors)
        except UnicodeDecodeError:
            raise ConnectorError(f"{self.key} is not UTF-8 text") from None
        except csv.Error as exc:
            raise ConnectorError(f"{self.key} line {self.line}: {exc}") from None
        pos = self.f.tell()
        used, self.pos = pos - self.pos, pos
        if not records and not errors and self.done:
            return None
        return Batch(records, used, errors)

    def _read_csv(self, n: int, records: list[dict[str, Any]], errors: list[str]) -> None:
        if self.csv is None:
            csv.field_size_limit(CSV_FIELD_CHARS_MAX)
            self.csv = csv.reader(self.text)
            try:
                self.header = next(self.csv)
            except StopIteration:
                self.done = True
                return
            self.line = 1
        header = self.header
        assert header is not None
        width = len(header)
        for row in self.csv:
            self.line += 1
            if len(row) != width:
                if not row:
                    continue
                errors.append(
                    f"{self.key} line {self.line}: {len(row)} values for {width} header fields"
                )
            else:
                records.append(dict(zip(header, row, strict=True)))
            if len(records) + len(errors) >= n:
                return
        self.done = True

    def _read_json(self, n: int, records: list[dict[str, Any]], errors: list[str]) -> None:
        while len(records) + len(errors) < n:
            line = self.text.readline(LINE_BYTES_MAX + 1)
            if not line:
                self.done = True
                return
            self.line += 1
            if len(line) > LINE_BYTES_MAX:
                raise ConnectorError(f"{self.key} line {self.line} is over {LINE_BYTES_MAX} bytes")
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                errors.append(f"{self.key} line {self.line}: not a JSON document")
                continue
            if not isinstance(value, dict):
                errors.append(f"{self.key} line {self.line}: not a JSON object")
                continue
            records.append(value)


class DirDestination(Destination):
    """Files under ``<root>/<bucketName>/<bucketPrefix>/<flow>/``: with a ``prefixConfig`` of
    type ``PATH`` (or ``PATH_AND_FILENAME``) the run's start time formatted to
    ``prefixFormat`` adds directories (``2024/05/17/09``), with ``FILENAME`` (or
    ``PATH_AND_FILENAME``) it starts the file name (``2024-05-17T09-``). The files are named
    after the execution id: ``<id>.<ext>`` for ``SingleFile`` aggregation, ``<id>-part-00000.<ext>``
    ... for ``None`` (a new part per written batch, or once ``targetFileSize`` MB is reached).
    Until the run succeeds each file is ``.<name>.tmp``; a failed run removes its files."""

    def __init__(self, ctx: RunContext, props: dict[str, Any], fields: list[str] | None) -> None:
        self.ctx = ctx
        self.bucket = str(props["bucketName"])
        self.prefix = str(props.get("bucketPrefix") or "").strip("/")
        fmt = props.get("s3OutputFormatConfig") or {}
        self.file_type = str(fmt.get("fileType") or "JSON")
        agg = fmt.get("aggregationConfig") or {}
        self.single = agg.get("aggregationType") == "SingleFile"
        size_mb = agg.get("targetFileSize")
        self.target_bytes = int(size_mb) << 20 if size_mb else None
        self.prefix_config = fmt.get("prefixConfig") or {}
        self.fields = fields
        self.ext = "csv" if self.file_type == "CSV" else "jsonl"
        self.files: list[Path] = []  # temporary names, in order
        self.part = 0
        self.current: Any = None
        self.current_bytes = 0
        self.csv_header: list[str] | None = None
        self.dir: Path | None = None
        self.name_prefix = ""

    def _time_parts(self) -> list[str]:
        level = PREFIX_FORMATS.get(str(self.prefix_config.get("prefixFormat") or "DAY"), 3)
        when = dt.datetime.fromtimestamp(self.ctx.started_ms / 1000, dt.UTC)
        parts = [f"{when.year:04d}", f"{when.month:02d}", f"{when.day:02d}"]
        parts += [f"{when.hour:02d}", f"{when.minute:02d}"]
        return parts[:level]

    def _open_dir(self) -> Path:
        if self.dir is not None:
            return self.dir
        base = bucket_dir(self.ctx.root, self.bucket)
        path = base / self.prefix if self.prefix else base
        path = path / self.ctx.flow
        kind = self.prefix_config.get("prefixType")
        if kind in ("PATH", "PATH_AND_FILENAME"):
            path = path.joinpath(*self._time_parts())
        if kind in ("FILENAME", "PATH_AND_FILENAME"):
            parts = self._time_parts()
            self.name_prefix = "-".join(parts[:3]) + (
                "T" + "-".join(parts[3:]) if parts[3:] else ""
            )
            self.name_prefix += "-"
        if base.resolve() not in path.resolve().parents:
            raise ConnectorError("the destination path leaves the bucket", "ValidationException")
        path.mkdir(parents=True, exist_ok=True)
        self.dir = path
        return path

    def _final_name(self, part: int) -> str:
        eid = self.ctx.execution_id
        if self.single:
            return f"{self.name_prefix}{eid}.{self.ext}"
        return f"{self.name_prefix}{eid}-part-{part:05d}.{self.ext}"

    def _new_file(self) -> None:
        self._close_current()
        directory = self._open_dir()
        path = directory / f".{self._final_name(self.part)}.tmp"
        self.part += 1
        self.files.append(path)
        self.current = open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        self.current_bytes = 0
        self.csv_header = None

    def _close_current(self) -> None:
        if self.current is not None:
            self.current.flush()
            os.fsync(self.current.fileno())
            self.current.close()
            self.current = None

    def _write(self, records: list[dict[str, Any]]) -> Written:
        out = Written()
        if not records:
            return out
        if self.current is None or (
            not self.single
            and (self.target_bytes is None or self.current_bytes >= self.target_bytes)
        ):
            self._new_file()
        f = self.current
        if self.file_type == "CSV":
            buf = io.StringIO()
            writer = csv.writer(buf)
            if self.csv_header is None:
                self.csv_header = list(self.fields or records[0].keys())
                writer.writerow(self.csv_header)
            header = self.csv_header
            for rec in records:
                writer.writerow(
                    ["" if rec.get(k) is None else _csv_value(rec.get(k)) for k in header]
                )
            text = buf.getvalue()
        else:
            text = "".join(dumps({k: jsonable(v) for k, v in r.items()}) + "\n" for r in records)
        f.write(text)
        size = len(text.encode("utf-8"))
        self.current_bytes += size
        out.count = len(records)
        out.bytes = size
        return out

    async def write(self, records: list[dict[str, Any]]) -> Written:
        try:
            written: Written = await _in_thread(self._write, records)
        except OSError as exc:
            raise ConnectorError(f"cannot write to bucket {self.bucket}: {exc.strerror}") from None
        return written

    def _finish(self, ok: bool) -> None:
        try:
            self._close_current()
        finally:
            for i, tmp in enumerate(self.files):
                if ok:
                    os.replace(tmp, tmp.with_name(self._final_name(i)))
                else:
                    tmp.unlink(missing_ok=True)
            if ok and self.dir is not None:
                fd = os.open(self.dir, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    async def finish(self, ok: bool) -> None:
        await _in_thread(self._finish, ok)


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return dumps(value)  # type: ignore[arg-type]
    return jsonable(value)


# -- SQS --------------------------------------------------------------------------------------


def _queue_name(entity: str) -> str:
    """A queue name from a name, a queue URL or an ARN."""
    if entity.startswith("arn:"):
        return entity.rsplit(":", 1)[-1]
    if "://" in entity:
        return entity.rstrip("/").rsplit("/", 1)[-1]
    return entity


class SqsSource(Source):
    """The messages ready in the queue when the run starts (at most that many): a JSON object
    body is the record as it is, any other body the record ``{"body": text}``. Messages are
    taken with a lease and deleted once the destination has their records; a failed run
    returns them to the queue."""

    def __init__(self, ctx: RunContext, entity: str) -> None:
        self.ctx = ctx
        self.queue = _queue_name(entity)
        self._held: list[int] = []

    async def batches(self) -> AsyncIterator[Batch]:
        broker = self.ctx.broker
        counts = broker.queue_counts(self.queue, vhost=VHOST)
        if counts is None:
            raise ConnectorError(f"SQS queue {self.queue} does not exist")
        budget = counts[0]
        while budget > 0:
            got, _ = await broker.get(
                APPFLOW_SESSION,
                self.queue,
                vhost=VHOST,
                max_n=min(BATCH_RECORDS, budget),
                lease_ms=SQS_SOURCE_LEASE_MS,
            )
            if not got:
                break
            budget -= len(got)
            ids = [d[0] for d in got]
            self._held.extend(ids)
            records: list[dict[str, Any]] = []
            size = 0
            for d in got:
                body = bytes(d[6])
                size += len(body)
                records.append(_record_of_body(body))

            async def ack(ids: list[int] = ids) -> None:
                await self._settle(ids, COMPLETE)

            async def nack(ids: list[int] = ids) -> None:
                await self._settle(ids, REQUEUE)

            yield Batch(records, size, ack=ack, nack=nack)

    async def _settle(self, ids: list[int], op: int) -> None:
        held = self.ctx.broker.held(APPFLOW_SESSION, ids)
        if held:
            await self.ctx.broker.settle(APPFLOW_SESSION, held, op)
        done = set(ids)
        self._held = [i for i in self._held if i not in done]

    async def close(self, ok: bool) -> None:
        if self._held:
            with trio.CancelScope(shield=True):
                try:
                    await self._settle(list(self._held), REQUEUE)
                except BrokerError:
                    pass  # the leases run out and the messages come back anyway


def _record_of_body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {"body": body.decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"body": body.decode("utf-8", "replace")}


class SqsDestination(Destination):
    """One message per record, its body the record's JSON; sent as SQS SendMessage sends (the
    SQS adapter builds each message), many per core publish. A FIFO queue takes its message
    group from ``customProperties`` ``messageGroupId`` (a constant) or ``messageGroupIdField``
    (a record field), and a deduplication id from ``messageDeduplicationIdField`` (else its
    content-based deduplication)."""

    def __init__(self, ctx: RunContext, entity: str, custom: dict[str, str]) -> None:
        self.ctx = ctx
        self.queue = _queue_name(entity)
        self.group = custom.get("messageGroupId")
        self.group_field = custom.get("messageGroupIdField")
        self.dedup_field = custom.get("messageDeduplicationIdField")

    async def write(self, records: list[dict[str, Any]]) -> Written:
        from broker.adapters.sqs import Context as SqsContext

        sqs = self.ctx.sqs
        out = Written()
        try:
            info = sqs._info(self.queue)
        except ServiceError:
            raise ConnectorError(f"SQS queue {self.queue} does not exist") from None
        attrs = sqs._attributes(info)
        fifo = bool(info["arguments"].get("x-fifo"))
        sqs_ctx = SqsContext()
        messages: list[Any] = []
        sizes: list[int] = []
        for rec in records:
            body = dumps({k: jsonable(v) for k, v in rec.items()})
            entry: dict[str, Any] = {"MessageBody": body}
            if fifo:
                group = rec.get(self.group_field) if self.group_field else self.group
                entry["MessageGroupId"] = str(group) if group not in (None, "") else "appflow"
                if self.dedup_field and rec.get(self.dedup_field) not in (None, ""):
                    entry["MessageDeduplicationId"] = str(rec[self.dedup_field])
            try:
                message, _reply = sqs._build(entry, self.queue, attrs, fifo, sqs_ctx)
            except ServiceError as exc:
                out.fail(f"{exc.code}: {exc.message}")
                continue
            messages.append(message)
            sizes.append(len(message[2]))
        for start in range(0, len(messages), SQS_PUBLISH_BATCH):
            chunk = messages[start : start + SQS_PUBLISH_BATCH]
            result = await self.ctx.broker.publish("", chunk, vhost=VHOST)
            rejected = set(result.rejected)
            for pos, routed in enumerate(result.routed):
                if routed == 0:
                    raise ConnectorError(f"SQS queue {self.queue} does not exist")
                if pos in rejected:
                    out.fail("the queue refused the message (overflow)")
                else:
                    out.count += 1
                    out.bytes += sizes[start + pos]
        return out


# -- SNS and EventBridge ----------------------------------------------------------------------


class SnsDestination(Destination):
    """One SNS Publish per record (PublishBatch of ten), the message the record's JSON."""

    def __init__(self, ctx: RunContext, entity: str) -> None:
        self.ctx = ctx
        self.topic_arn = entity if entity.startswith("arn:") else ctx.sns.topic_arn(entity)

    async def write(self, records: list[dict[str, Any]]) -> Written:
        from broker.adapters.sns import Context as SnsContext

        out = Written()
        for start in range(0, len(records), SNS_BATCH):
            chunk = records[start : start + SNS_BATCH]
            bodies = [dumps({k: jsonable(v) for k, v in r.items()}) for r in chunk]
            entries = [{"Id": str(i), "Message": b} for i, b in enumerate(bodies)]
            try:
                reply = await self.ctx.sns.handle(
                    "PublishBatch",
                    {"TopicArn": self.topic_arn, "PublishBatchRequestEntries": entries},
                    SnsContext(),
                )
            except ServiceError as exc:
                if exc.code in ("NotFound", "NotFoundException", "InvalidParameter"):
                    raise ConnectorError(f"SNS topic {self.topic_arn}: {exc.message}") from None
                for _ in chunk:
                    out.fail(f"{exc.code}: {exc.message}")
                continue
            for ok in reply.get("Successful") or []:
                out.count += 1
                out.bytes += len(bodies[int(ok["Id"])].encode())
            for bad in reply.get("Failed") or []:
                out.fail(f"{bad.get('Code')}: {bad.get('Message')}")
        return out


class EventsDestination(Destination):
    """One event per record on the bus ``object`` (a name or ARN): source ``polymq.appflow``,
    detail-type the flow's name, detail the record."""

    def __init__(self, ctx: RunContext, bus: str) -> None:
        self.ctx = ctx
        self.bus = bus

    async def write(self, records: list[dict[str, Any]]) -> Written:
        out = Written()
        for start in range(0, len(records), EVENTS_BATCH):
            chunk = records[start : start + EVENTS_BATCH]
            details = [dumps({k: jsonable(v) for k, v in r.items()}) for r in chunk]
            entries = [
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": self.ctx.flow,
                    "Detail": d,
                    "EventBusName": self.bus,
                }
                for d in details
            ]
            try:
                reply = await self.ctx.events.handle("PutEvents", {"Entries": entries})
            except ServiceError as exc:
                for _ in chunk:
                    out.fail(f"{exc.code}: {exc.message}")
                continue
            for entry, detail in zip(reply.get("Entries") or [], details, strict=False):
                if "ErrorCode" in entry:
                    if entry["ErrorCode"] == "ResourceNotFoundException":
                        raise ConnectorError(f"event bus {self.bus} does not exist")
                    out.fail(f"{entry['ErrorCode']}: {entry.get('ErrorMessage')}")
                else:
                    out.count += 1
                    out.bytes += len(detail.encode())
        return out


# -- HTTP JSON API ----------------------------------------------------------------------------


def _dig(doc: Any, path: str) -> Any:
    """``a.b.0.c`` in a JSON document; None when absent."""
    if not path:
        return doc
    for part in path.split("."):
        if isinstance(doc, dict):
            doc = doc.get(part)
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def _next_link(header: str) -> str | None:
    """The ``rel="next"`` target of an RFC 8288 Link header."""
    for part in header.split(","):
        m = re.match(r"\s*<([^>]*)>\s*;(.*)", part)
        if m and re.search(r'rel\s*=\s*"?next"?', m.group(2)):
            return m.group(1)
    return None


PAGINATIONS = ("none", "nextToken", "offset", "page", "nextUrl")


def http_headers(profile: dict[str, Any], custom: dict[str, str]) -> list[tuple[str, str]]:
    creds = profile.get("credentials") or {}
    headers = [("Accept", "application/json")]
    kind = creds.get("authenticationType")
    if kind == "BASIC":
        basic = creds.get("basic") or {}
        pair = f"{basic.get('username')}:{basic.get('password')}".encode()
        headers.append(("Authorization", "Basic " + base64.b64encode(pair).decode("ascii")))
    elif kind == "APIKEY":
        header = custom.get("apiKeyHeader") or "X-API-Key"
        headers.append((header, str((creds.get("apiKey") or {}).get("apiKey") or "")))
    elif kind == "OAUTH2":
        access = (creds.get("oauth2") or {}).get("accessToken")
        if access:
            headers.append(("Authorization", f"Bearer {access}"))
    elif kind == "CUSTOM":
        for key, value in ((creds.get("custom") or {}).get("credentialsMap") or {}).items():
            headers.append((str(key), str(value)))
    return headers


class HttpSource(Source):
    """GET ``baseUrl`` + ``entityName``, page after page. ``customProperties``:
    ``recordsPath`` (dotted path of the records array in the reply; empty: the reply is the
    array), ``pagination`` (``none``, ``nextToken``: ``nextTokenPath`` in the reply is sent back
    as query parameter ``nextTokenParam``; ``offset``: ``offsetParam``/``limitParam`` with
    ``pageSize``; ``page``: ``pageParam`` from ``firstPage``; ``nextUrl``: the URL at
    ``nextUrlPath`` or the Link header's ``rel="next"``), ``query.<name>`` constant query
    parameters, ``watermarkParam`` (an incremental run sends the last watermark in it) and
    ``apiKeyHeader`` (for APIKEY credentials, default ``X-API-Key``). Pagination stops at an
    empty page, a missing token or ``HTTP_PAGES_MAX`` pages."""

    def __init__(
        self, ctx: RunContext, profile: dict[str, Any], entity: str, custom: dict[str, str]
    ) -> None:
        self.ctx = ctx
        base = str((profile.get("properties") or {}).get("baseUrl") or "")
        self.url = urljoin(base if base.endswith("/") else base + "/", entity.lstrip("/"))
        self.custom = custom
        self.headers = http_headers(profile, custom)
        self.mode = custom.get("pagination") or "none"

    def _query(self, extra: dict[str, str]) -> str:
        params = {k[len("query.") :]: v for k, v in self.custom.items() if k.startswith("query.")}
        wm_param = self.custom.get("watermarkParam")
        if wm_param and self.ctx.watermark is not None:
            params[wm_param] = watermark_text(self.ctx.watermark)
        params.update(extra)
        return urlencode(params)

    async def _get(self, url: str) -> tuple[Any, dict[str, str], int]:
        try:
            resp = await http_client.request(
                "GET",
                url,
                headers=self.headers,
                timeout_s=HTTP_TIMEOUT_S,
                response_bytes_max=HTTP_PAGE_BYTES_MAX,
            )
        except http_client.HttpError as exc:
            raise ConnectorError(f"GET {url}: {exc}") from None
        if resp.status in (401, 403):
            raise ConnectorError(
                f"GET {url} answered {resp.status}: the connector profile's credentials were "
                "refused",
                "ConnectorAuthenticationException",
            )
        if not 200 <= resp.status < 300:
            text = resp.body[:200].decode("utf-8", "replace")
            raise ConnectorError(f"GET {url} answered {resp.status}: {text}")
        try:
            doc = json.loads(resp.body) if resp.body.strip() else None
        except ValueError:
            raise ConnectorError(f"GET {url} did not answer JSON") from None
        return doc, resp.headers, len(resp.body)

    async def batches(self) -> AsyncIterator[Batch]:
        c = self.custom
        size = int(c.get("pageSize") or HTTP_PAGE_SIZE_DEFAULT)
        extra: dict[str, str] = {}
        if self.mode == "offset":
            extra = {
                c.get("offsetParam") or "offset": "0",
                c.get("limitParam") or "limit": str(size),
            }
        elif self.mode == "page":
            extra = {c.get("pageParam") or "page": c.get("firstPage") or "1"}
            if c.get("limitParam"):
                extra[c["limitParam"]] = str(size)
        query = self._query(extra)
        url = self.url + ("?" + query if query else "")
        offset = 0
        page = int(c.get("firstPage") or 1)
        for _ in range(HTTP_PAGES_MAX):
            doc, headers, nbytes = await self._get(url)
            items = _dig(doc, c.get("recordsPath") or "")
            if items is None:
                items = []
            if not isinstance(items, list):
                raise ConnectorError(
                    f"GET {url}: recordsPath {c.get('recordsPath')!r} is not an array"
                )
            records = [i if isinstance(i, dict) else {"value": i} for i in items]
            yield Batch(records, nbytes)
            if not records or self.mode == "none":
                return
            if self.mode == "nextToken":
                token = _dig(doc, c.get("nextTokenPath") or "nextToken")
                if token in (None, ""):
                    return
                url = (
                    self.url
                    + "?"
                    + self._query({c.get("nextTokenParam") or "nextToken": str(token)})
                )
            elif self.mode == "offset":
                offset += len(records)
                if len(records) < size:
                    return
                extra[c.get("offsetParam") or "offset"] = str(offset)
                url = self.url + "?" + self._query(extra)
            elif self.mode == "page":
                page += 1
                extra[c.get("pageParam") or "page"] = str(page)
                url = self.url + "?" + self._query(extra)
            elif self.mode == "nextUrl":
                nxt = _dig(doc, c.get("nextUrlPath") or "next")
                if not isinstance(nxt, str) or not nxt:
                    nxt = _next_link(headers.get("link", ""))
                if not nxt:
                    return
                nxt = urljoin(url, nxt)
                if urlsplit(nxt).netloc != urlsplit(self.url).netloc:
                    raise ConnectorError(f"the next page {nxt} is on another host")
                url = nxt
        raise ConnectorError(f"GET {self.url}: more than {HTTP_PAGES_MAX} pages")


# -- SQL (SQLAlchemy) -------------------------------------------------------------------------


def sql_url(root: Path, profile: dict[str, Any]) -> Any:
    """The SQLAlchemy URL of a ``polymq-sql`` profile: ``databaseUrl``, or ``database`` (an
    SQLite file under the AppFlow root), by default ``appflow.sqlite`` there. An SQLite file
    must lie under the AppFlow root; BASIC credentials set the URL's user and password."""
    import sqlalchemy as sa
    from sqlalchemy.exc import ArgumentError

    props = profile.get("properties") or {}
    text = props.get("databaseUrl")
    if text:
        try:
            url = sa.engine.make_url(str(text))
        except (ArgumentError, ValueError) as exc:
            raise validation(f"databaseUrl is not a SQLAlchemy URL: {exc}") from None
    else:
        name = str(props.get("database") or "appflow.sqlite")
        url = sa.engine.URL.create("sqlite", database=name)
    if url.get_backend_name() == "sqlite":
        db = url.database or ""
        if db in ("", ":memory:") or db.startswith("file:"):
            raise validation("an SQLite database must be a file under the AppFlow root")
        path = (root / db).resolve()
        if root.resolve() not in path.parents:
            raise validation(f"the SQLite file {db} is not under the AppFlow root")
        url = url.set(database=str(path))
    creds = profile.get("credentials") or {}
    if creds.get("authenticationType") == "BASIC":
        basic = creds.get("basic") or {}
        url = url.set(username=basic.get("username"), password=basic.get("password"))
    return url


def sql_engine(url: Any) -> Any:
    import sqlalchemy as sa

    if url.get_backend_name() == "sqlite":
        return sa.create_engine(
            url, connect_args={"check_same_thread": False, "timeout": SQL_TIMEOUT_S}
        )
    return sa.create_engine(url, pool_pre_ping=True)


def sql_check(url: Any) -> None:
    """Connect once (blocking): ``ConnectorError`` with ``ConnectorAuthenticationException``
    when the database refuses the connection."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = sql_engine(url)
    except (ModuleNotFoundError, ImportError) as exc:
        raise ConnectorError(f"no driver for this database: {exc}", "ValidationException") from None
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc)[:200]
        raise ConnectorError(
            f"cannot connect to the database: {exc.__class__.__name__}: {reason}",
            "ConnectorAuthenticationException",
        ) from None
    finally:
        engine.dispose()


def _table(engine: Any, name: str) -> Any:
    import sqlalchemy as sa
    from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

    try:
        return sa.Table(name, sa.MetaData(), autoload_with=engine)
    except NoSuchTableError:
        raise ConnectorError(f"table {name} does not exist") from None
    except SQLAlchemyError as exc:
        raise ConnectorError(f"cannot read table {name}: {exc}") from None


def _bind_value(column: Any, value: Any) -> Any:
    """A value to compare with or store in ``column``: dates for date columns (from ISO text
    or epoch milliseconds)."""
    import sqlalchemy as sa

    if value is None:
        return None
    if isinstance(column.type, sa.DateTime) and not isinstance(value, dt.datetime):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return dt.datetime.fromtimestamp(value / 1000, dt.UTC).replace(tzinfo=None)
        text = str(value).replace("Z", "+00:00")
        when = dt.datetime.fromisoformat(text)
        return when.astimezone(dt.UTC).replace(tzinfo=None) if when.tzinfo else when
    if isinstance(column.type, sa.Date) and not isinstance(value, dt.date):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return dt.datetime.fromtimestamp(value / 1000, dt.UTC).date()
        return dt.date.fromisoformat(str(value)[:10])
    if isinstance(column.type, sa.Boolean) and isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return value


class SqlSource(Source):
    """The rows of table ``entityName`` (the projected columns only). An incremental run
    selects ``watermark > last`` (``>= firstExecutionFrom`` on its first run) ordered by the
    watermark column and remembers the highest value it read."""

    pushes_down_watermark = True

    def __init__(self, ctx: RunContext, url: Any, table: str) -> None:
        self.ctx = ctx
        self.url = url
        self.table_name = table
        self.engine: Any = None
        self.conn: Any = None
        self.result: Any = None
        self.wm_index: int | None = None

    def _open(self) -> None:
        import sqlalchemy as sa

        self.engine = sql_engine(self.url)
        table = _table(self.engine, self.table_name)
        cols = list(table.columns)
        if self.ctx.projection is not None:
            missing = [c for c in self.ctx.projection if c not in table.columns]
            if missing:
                raise ConnectorError(f"table {self.table_name} has no column {missing[0]}")
            cols = [table.columns[c] for c in self.ctx.projection]
        wm_name = self.ctx.watermark_field
        query = None
        if wm_name is not None:
            if wm_name not in table.columns:
                raise ConnectorError(
                    f"table {self.table_name} has no column {wm_name} (datetimeTypeFieldName)"
                )
            wm_col = table.columns[wm_name]
            if wm_col not in cols:
                cols.append(wm_col)
            self.wm_index = cols.index(wm_col)
            query = sa.select(*cols).order_by(wm_col)
            if self.ctx.watermark is not None:
                query = query.where(wm_col > _bind_value(wm_col, self.ctx.watermark))
            elif self.ctx.first_from_ms is not None:
                query = query.where(wm_col >= _bind_value(wm_col, self.ctx.first_from_ms))
        else:
            query = sa.select(*cols)
            pk = list(table.primary_key.columns)
            if pk:
                query = query.order_by(*pk)
        self.names = [c.name for c in cols]
        self.keep = len(cols) if self.ctx.projection is None else len(self.ctx.projection)
        if (
            wm_name is not None
            and self.ctx.projection is not None
            and wm_name in self.ctx.projection
        ):
            self.keep = len(cols)
        self.conn = self.engine.connect()
        self.result = self.conn.execution_options(stream_results=True).execute(query)

    def _fetch(self) -> Batch | None:
        rows = self.result.fetchmany(BATCH_RECORDS)
        if not rows:
            return None
        names = self.names
        keep = self.keep
        records = []
        size = 0
        for row in rows:
            rec = {names[i]: jsonable(row[i]) for i in range(keep)}
            records.append(rec)
            size += len(dumps(rec))
        if self.wm_index is not None:
            self.new_watermark = rows[-1][self.wm_index]
        return Batch(records, size)

    async def batches(self) -> AsyncIterator[Batch]:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            await _in_thread(self._open)
            while True:
                batch = await _in_thread(self._fetch)
                if batch is None:
                    return
                yield batch
        except SQLAlchemyError as exc:
            raise ConnectorError(f"table {self.table_name}: {exc}") from None

    def _close(self) -> None:
        try:
            if self.result is not None:
                self.result.close()
            if self.conn is not None:
                self.conn.close()
        finally:
            if self.engine is not None:
                self.engine.dispose()

    async def close(self, ok: bool) -> None:
        with trio.CancelScope(shield=True):
            await _in_thread(self._close)


class SqlDestination(Destination):
    """Rows of table ``entityName``: ``writeOperationType`` ``INSERT`` (the default),
    ``UPSERT`` (insert, or update the row with the same ``idFieldNames``: SQLite and
    PostgreSQL use ``ON CONFLICT``, which needs a unique index on those columns; other
    databases update, then insert what matched nothing) or ``UPDATE`` (a record that matches
    no row is a put failure). Record fields that are not columns are left out. A batch that
    fails is written again row by row so each failing record is counted."""

    def __init__(self, ctx: RunContext, url: Any, table: str, op: str, ids: list[str]) -> None:
        self.ctx = ctx
        self.url = url
        self.table_name = table
        self.op = op
        self.ids = ids
        self.engine: Any = None
        self.table: Any = None

    def _open(self) -> None:
        if self.engine is None:
            self.engine = sql_engine(self.url)
            self.table = _table(self.engine, self.table_name)
            missing = [i for i in self.ids if i not in self.table.columns]
            if missing:
                raise ConnectorError(f"table {self.table_name} has no column {missing[0]}")

    def _rows(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        cols = self.table.columns
        return [{k: _bind_value(cols[k], v) for k, v in r.items() if k in cols} for r in records]

    def _statement(self, conn: Any, rows: list[dict[str, Any]]) -> int:
        """Write ``rows``; how many matched nothing (UPDATE)."""
        import sqlalchemy as sa

        table = self.table
        if self.op == "INSERT":
            conn.execute(table.insert(), rows)
            return 0
        unmatched = 0
        dialect = conn.dialect.name
        for row in rows:
            where = sa.and_(*(table.columns[i] == row.get(i) for i in self.ids))
            values = {k: v for k, v in row.items() if k not in self.ids}
            if self.op == "UPSERT" and dialect in ("sqlite", "postgresql"):
                stmt: Any
                if dialect == "sqlite":
                    from sqlalchemy.dialects import sqlite

                    stmt = sqlite.insert(table).values(**row)
                else:
                    from sqlalchemy.dialects import postgresql

                    stmt = postgresql.insert(table).values(**row)
                if values:
                    stmt = stmt.on_conflict_do_update(
                        index_elements=self.ids, set_={k: stmt.excluded[k] for k in values}
                    )
                else:
                    stmt = stmt.on_conflict_do_nothing(index_elements=self.ids)
                conn.execute(stmt)
                continue
            count = (
                conn.execute(table.update().where(where).values(**values)).rowcount if values else 0
            )
            if count == 0:
                if self.op == "UPSERT":
                    conn.execute(table.insert().values(**row))
                else:
                    unmatched += 1
        return unmatched

    def _write(self, records: list[dict[str, Any]]) -> Written:
        from sqlalchemy.exc import SQLAlchemyError

        self._open()
        out = Written()
        rows = self._rows(records)
        rows_with_size = [(r, len(dumps(rec))) for r, rec in zip(rows, records, strict=True)]
        try:
            with self.engine.begin() as conn:
                unmatched = self._statement(conn, rows)
            out.count = len(rows) - unmatched
            out.bytes = sum(s for _, s in rows_with_size)
            for _ in range(unmatched):
                out.fail("UPDATE: no row has these idFieldNames")
            return out
        except SQLAlchemyError:
            pass
        for row, size in rows_with_size:
            try:
                with self.engine.begin() as conn:
                    unmatched = self._statement(conn, [row])
            except SQLAlchemyError as exc:
                out.fail(f"{exc.__class__.__name__}: {str(getattr(exc, 'orig', exc))[:200]}")
                continue
            if unmatched:
                out.fail("UPDATE: no row has these idFieldNames")
            else:
                out.count += 1
                out.bytes += size
        return out

    async def write(self, records: list[dict[str, Any]]) -> Written:
        try:
            written: Written = await _in_thread(self._write, records)
        except (ValueError, TypeError) as exc:
            raise ConnectorError(f"table {self.table_name}: {exc}") from None
        return written

    async def finish(self, ok: bool) -> None:
        if self.engine is not None:
            with trio.CancelScope(shield=True):
                await _in_thread(self.engine.dispose)


def new_execution_id() -> str:
    return str(uuid.uuid4())
