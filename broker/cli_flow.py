"""``polymq flow run NAME``: run an on-demand AppFlow flow on a running broker and follow it.

It calls StartFlow on the AWS endpoint (``--endpoint``, default ``http://127.0.0.1:4566``),
then polls DescribeFlowExecutionRecords every ``POLL_INTERVAL_S`` until the run is no longer
``InProgress``, drawing a progress bar on stderr (records and bytes so far; on a terminal the
line is redrawn, otherwise one line per ``LOG_INTERVAL_S`` when the count moved), and prints a
summary on stdout. Ctrl-C cancels the run (CancelFlowExecutions). Exit code 0 when the run
succeeded, 1 when it failed, was canceled or the API refused, 2 for usage errors.

The client is botocore's (a dependency of polymq), signed with the usual AWS credentials of
the environment, or with ``test``/``test`` when there are none (a broker with ``aws_auth =
"any"`` takes any).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, TextIO

DEFAULT_ENDPOINT = "http://127.0.0.1:4566"
POLL_INTERVAL_S = 0.2
LOG_INTERVAL_S = 1.0
REQUEST_TIMEOUT_S = 10.0
BAR_CELLS = 24

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any) -> argparse.ArgumentParser:
    flow: argparse.ArgumentParser = sub.add_parser("flow", help="run AppFlow flows on a broker")
    fsub = flow.add_subparsers(dest="flow_command", metavar="ACTION")
    run = fsub.add_parser("run", help="run an on-demand flow and follow it to the end")
    run.add_argument("name", help="the flow's name")
    run.add_argument(
        "--endpoint", default=DEFAULT_ENDPOINT, help="AWS endpoint (default %(default)s)"
    )
    run.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    run.add_argument(
        "--timeout", type=float, default=3600.0, help="give up after SECONDS (default 3600)"
    )
    run.add_argument("--json", action="store_true", help="print the execution record as JSON")
    return flow


def _client(endpoint: str, region: str) -> Any:
    import botocore.config
    import botocore.session

    session = botocore.session.get_session()
    kwargs: dict[str, Any] = {}
    if session.get_credentials() is None:
        kwargs = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}
    return session.create_client(
        "appflow",
        endpoint_url=endpoint,
        region_name=region,
        config=botocore.config.Config(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=REQUEST_TIMEOUT_S,
            read_timeout=REQUEST_TIMEOUT_S,
        ),
        **kwargs,
    )


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class Progress:
    """An indeterminate bar (the record count is not known ahead) with counts and rate."""

    def __init__(self, out: TextIO, started: float) -> None:
        self.out = out
        self.tty = out.isatty()
        self.started = started
        self.tick = 0
        self.last_log = 0.0
        self.last_records = -1

    def show(self, records: int, nbytes: int, now: float) -> None:
        elapsed = max(now - self.started, 1e-9)
        rate = records / elapsed
        text = f"{records:>10,} records  {_size(nbytes):>9}  {rate:>9,.0f}/s  {elapsed:6.1f} s"
        if self.tty:
            pos = self.tick % (2 * BAR_CELLS - 2)
            pos = pos if pos < BAR_CELLS else 2 * BAR_CELLS - 2 - pos
            bar = "".join("#" if abs(i - pos) <= 1 else "." for i in range(BAR_CELLS))
            self.tick += 1
            self.out.write(f"\r[{bar}] {text}")
            self.out.flush()
        elif records != self.last_records and now - self.last_log >= LOG_INTERVAL_S:
            self.last_log = now
            self.last_records = records
            self.out.write(f"progress: {text}\n")
            self.out.flush()

    def done(self, records: int, nbytes: int, now: float) -> None:
        if self.tty:
            self.out.write(f"\r[{'#' * BAR_CELLS}] {records:>10,} records  {_size(nbytes):>9}\n")
        else:
            self.out.write(f"progress: {records:,} records, {_size(nbytes)}, done\n")
        self.out.flush()


def _record(client: Any, name: str, eid: str) -> dict[str, Any] | None:
    token = None
    while True:
        kw: dict[str, Any] = {"flowName": name, "maxResults": 100}
        if token:
            kw["nextToken"] = token
        page = client.describe_flow_execution_records(**kw)
        for rec in page.get("flowExecutions", []):
            if rec.get("executionId") == eid:
                return dict(rec)
        token = page.get("nextToken")
        if not token:
            return None


def _error_text(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return f"{err.get('Code')}: {err.get('Message')}"
    return str(exc)


def run_flow(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    client = _client(args.endpoint, args.region)
    name = args.name
    try:
        flow = client.describe_flow(flowName=name)
        trigger = flow.get("triggerConfig", {}).get("triggerType")
        if trigger != "OnDemand":
            print(
                f"polymq: error: flow {name} is {trigger}-triggered: `polymq flow run` runs "
                "on-demand flows (StartFlow activates the others)",
                file=err,
            )
            return EXIT_USAGE
        started = time.monotonic()
        eid = client.start_flow(flowName=name)["executionId"]
    except (ClientError, BotoCoreError) as exc:
        print(f"polymq: error: {_error_text(exc)}", file=err)
        return EXIT_FAILED
    print(f"flow {name}: execution {eid} started", file=err)
    progress = Progress(err, started)
    deadline = started + args.timeout
    record: dict[str, Any] | None = None
    try:
        while True:
            try:
                record = _record(client, name, eid)
            except (ClientError, BotoCoreError) as exc:
                print(f"\npolymq: error: {_error_text(exc)}", file=err)
                return EXIT_FAILED
            result = (record or {}).get("executionResult", {})
            records = int(result.get("recordsProcessed", 0))
            nbytes = int(result.get("bytesProcessed", 0))
            now = time.monotonic()
            if record is not None and record.get("executionStatus") not in (
                "InProgress",
                "CancelStarted",
            ):
                progress.done(records, nbytes, now)
                break
            progress.show(records, nbytes, now)
            if now > deadline:
                print(f"\npolymq: error: the run did not finish within {args.timeout} s", file=err)
                return EXIT_FAILED
            time.sleep(POLL_INTERVAL_S)
    except KeyboardInterrupt:
        print("\ncanceling the run...", file=err)
        try:
            client.cancel_flow_executions(flowName=name, executionIds=[eid])
        except (ClientError, BotoCoreError) as exc:
            print(f"polymq: error: {_error_text(exc)}", file=err)
        return EXIT_FAILED
    assert record is not None
    elapsed = time.monotonic() - started
    status = record.get("executionStatus")
    result = record.get("executionResult", {})
    info = result.get("errorInfo", {})
    if args.json:
        print(json.dumps(record, default=str, indent=2), file=out)
    else:
        records = int(result.get("recordsProcessed", 0))
        print(f"flow {name} execution {eid}: {status}", file=out)
        print(f"  records processed  {records:,}", file=out)
        print(f"  bytes processed    {_size(int(result.get('bytesProcessed', 0)))}", file=out)
        print(f"  bytes written      {_size(int(result.get('bytesWritten', 0)))}", file=out)
        print(f"  failures           {int(info.get('putFailuresCount', 0)):,}", file=out)
        print(
            f"  elapsed            {elapsed:.1f} s ({records / elapsed:,.0f} records/s)", file=out
        )
        if info.get("executionMessage"):
            print(f"  message            {info['executionMessage']}", file=out)
    return EXIT_OK if status == "Successful" else EXIT_FAILED


def main(args: argparse.Namespace) -> int:
    if args.flow_command == "run":
        return run_flow(args)
    print("polymq: error: flow needs an action: run", file=sys.stderr)
    return EXIT_USAGE
