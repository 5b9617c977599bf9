"""Connections and API destinations through boto3, delivering to a local HTTP server: basic,
API-key and OAuth client-credentials auth, HttpParameters, RetryPolicy and DeadLetterConfig."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.interop import events_helpers
from tests.interop.events_helpers import expect_error, name, new_queue, put

events_broker, events, sqs = (
    events_helpers.events_broker,
    events_helpers.events,
    events_helpers.sqs,
)
WAIT_S = 10.0


class Recorder:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.tokens_issued = 0

    def wait(self, path: str, n: int, timeout: float = WAIT_S) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = [r for r in self.requests if r["path"].split("?")[0] == path]
            if len(got) >= n or time.monotonic() > deadline:
                assert len(got) == n, got
                return got
            time.sleep(0.05)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Recorder]]:
    rec = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            with rec.lock:
                rec.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
            status, out = 200, b"{}"
            if self.path.startswith("/token"):
                rec.tokens_issued += 1
                out = json.dumps({"access_token": "tok-1", "expires_in": 3600}).encode()
            elif self.path.startswith("/fail"):
                status = 500
            elif self.path.startswith("/reject"):
                status = 400
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_POST = do_PUT = do_GET = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", rec
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def api_rule(
    events: Any,
    base: str,
    path: str,
    auth_type: str,
    auth: dict[str, Any],
    target: dict[str, Any] | None = None,
) -> str:
    """A connection, an API destination to ``base + path`` and a rule on a fresh source; the
    source."""
    conn = events.create_connection(
        Name=name("conn"), AuthorizationType=auth_type, AuthParameters=auth
    )["ConnectionArn"]
    dest = events.create_api_destination(
        Name=name("dest"),
        ConnectionArn=conn,
        InvocationEndpoint=base + path,
        HttpMethod="POST",
    )["ApiDestinationArn"]
    source = name("src").replace("-", ".")
    rule = name("r")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "api", "Arn": dest, **(target or {})}])
    return source


def test_basic_auth(events: Any, server: tuple[str, Recorder]) -> None:
    base, rec = server
    source = api_rule(
        events,
        base,
        "/basic",
        "BASIC",
        {"BasicAuthParameters": {"Username": "u", "Password": "p"}},
        target={"HttpParameters": {"HeaderParameters": {"X-Extra": "1"}}},
    )
    reply = put(events, {"Source": source, "DetailType": "t", "Detail": {"k": "v"}})
    (req,) = rec.wait("/basic", 1)
    assert req["method"] == "POST"
    assert req["headers"]["authorization"] == "Basic dTpw"
    assert req["headers"]["x-extra"] == "1"
    assert req["headers"]["content-type"] == "application/json; charset=utf-8"
    event = json.loads(req["body"])
    assert (event["id"], event["detail"]) == (reply["Entries"][0]["EventId"], {"k": "v"})


def test_api_key_auth_and_transform(events: Any, server: tuple[str, Recorder]) -> None:
    base, rec = server
    source = api_rule(
        events,
        base,
        "/apikey",
        "API_KEY",
        {"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "secret"}},
        target={"InputPath": "$.detail"},
    )
    put(events, {"Source": source, "DetailType": "t", "Detail": {"k": "v"}})
    (req,) = rec.wait("/apikey", 1)
    assert req["headers"]["x-api-key"] == "secret"
    assert req["body"] == b'{"k":"v"}'


def test_oauth_client_credentials(events: Any, server: tuple[str, Recorder]) -> None:
    base, rec = server
    source = api_rule(
        events,
        base,
        "/oauth",
        "OAUTH_CLIENT_CREDENTIALS",
        {
            "OAuthParameters": {
                "ClientParameters": {"ClientID": "cid", "ClientSecret": "csecret"},
                "AuthorizationEndpoint": base + "/token",
                "HttpMethod": "POST",
            }
        },
    )
    before = rec.tokens_issued
    put(
        events,
        {"Source": source, "DetailType": "t", "Detail": {"n": 1}},
        {"Source": source, "DetailType": "t", "Detail": {"n": 2}},
    )
    reqs = rec.wait("/oauth", 2)
    assert [r["headers"]["authorization"] for r in reqs] == ["Bearer tok-1", "Bearer tok-1"]
    assert rec.tokens_issued - before == 1  # cached until it expires
    token_req = [r for r in rec.requests if r["path"] == "/token"][-1]
    assert token_req["headers"]["authorization"] == "Basic Y2lkOmNzZWNyZXQ="
    assert token_req["body"] == b"grant_type=client_credentials"


@pytest.mark.parametrize(("path", "attempts", "code"), [("/fail", 3, "500"), ("/reject", 1, "400")])
def test_dead_letter_after_retries(
    events: Any, sqs: Any, server: tuple[str, Recorder], path: str, attempts: int, code: str
) -> None:
    """5xx is retried (MaximumRetryAttempts 2: three attempts, 1 s then 2 s apart); a 4xx other
    than 401/407/409/429 is not. Then the event goes to the dead-letter queue."""
    base, rec = server
    dlq_url, dlq_arn = new_queue(sqs, "dlq")
    unique = path + "-" + name("p")
    source = api_rule(
        events,
        base,
        unique,
        "API_KEY",
        {"ApiKeyAuthParameters": {"ApiKeyName": "k", "ApiKeyValue": "v"}},
        target={
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60},
            "DeadLetterConfig": {"Arn": dlq_arn},
        },
    )
    reply = put(events, {"Source": source, "DetailType": "t", "Detail": {"d": 1}})
    msgs = sqs.receive_message(
        QueueUrl=dlq_url, WaitTimeSeconds=10, MessageAttributeNames=["All"]
    ).get("Messages", [])
    assert len(msgs) == 1
    assert json.loads(msgs[0]["Body"])["id"] == reply["Entries"][0]["EventId"]
    attrs = {k: v["StringValue"] for k, v in msgs[0]["MessageAttributes"].items()}
    assert set(attrs) == {"ERROR_CODE", "ERROR_MESSAGE", "RULE_ARN", "TARGET_ARN"}
    assert attrs["ERROR_CODE"] == code
    assert len(rec.wait(unique, attempts)) == attempts


def test_connection_and_destination_actions(events: Any, server: tuple[str, Recorder]) -> None:
    base, _ = server
    cname = name("conn")
    created = events.create_connection(
        Name=cname,
        AuthorizationType="BASIC",
        AuthParameters={"BasicAuthParameters": {"Username": "u", "Password": "p"}},
        Description="c",
    )
    assert created["ConnectionState"] == "AUTHORIZED"
    got = events.describe_connection(Name=cname)
    assert got["AuthParameters"] == {"BasicAuthParameters": {"Username": "u"}}  # no password
    assert (got["Name"], got["Description"], got["ConnectionArn"]) == (
        cname,
        "c",
        created["ConnectionArn"],
    )
    events.update_connection(Name=cname, Description="c2")
    assert events.describe_connection(Name=cname)["Description"] == "c2"
    assert [c["Name"] for c in events.list_connections(NamePrefix=cname)["Connections"]] == [cname]
    dname = name("dest")
    dest = events.create_api_destination(
        Name=dname,
        ConnectionArn=created["ConnectionArn"],
        InvocationEndpoint=base + "/x",
        HttpMethod="PUT",
        InvocationRateLimitPerSecond=10,
    )
    assert dest["ApiDestinationState"] == "ACTIVE"
    got = events.describe_api_destination(Name=dname)
    assert (got["HttpMethod"], got["InvocationEndpoint"], got["InvocationRateLimitPerSecond"]) == (
        "PUT",
        base + "/x",
        10,
    )
    events.update_api_destination(Name=dname, HttpMethod="POST")
    assert events.describe_api_destination(Name=dname)["HttpMethod"] == "POST"
    listed = events.list_api_destinations(NamePrefix=dname)["ApiDestinations"]
    assert [d["Name"] for d in listed] == [dname]
    events.delete_api_destination(Name=dname)
    expect_error(
        events.describe_api_destination,
        "ResourceNotFoundException",
        f"An api-destination '{dname}' does not exist.",
        Name=dname,
    )
    assert events.delete_connection(Name=cname)["ConnectionState"] == "DELETING"
    expect_error(
        events.describe_connection,
        "ResourceNotFoundException",
        f"Connection '{cname}' does not exist.",
        Name=cname,
    )
