"""SigV4 verification against signatures made by botocore's own signers (``SigV4Auth`` for the
``Authorization`` header, ``SigV4QueryAuth`` for presigned URLs)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from protocols.aws.errors import AwsError
from protocols.aws.sigv4 import SigV4Verifier

KEYS = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}


def signed(
    *,
    secret: str = KEYS["AKIDEXAMPLE"],
    key: str = "AKIDEXAMPLE",
    url: str = "http://localhost:4566/",
    body: bytes = b'{"QueueName": "q"}',
    method: str = "POST",
    region: str = "us-east-1",
    headers: dict[str, str] | None = None,
) -> tuple[str, str, dict[str, str], bytes]:
    request = AWSRequest(
        method=method,
        url=url,
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.GetQueueUrl",
            **(headers or {}),
        },
    )
    SigV4Auth(Credentials(key, secret), "sqs", region).add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lowered = {name.lower(): str(value) for name, value in prepared.headers.items()}
    lowered["host"] = parts.netloc
    return method, target, lowered, body


def test_botocore_signature_verifies() -> None:
    assert SigV4Verifier(KEYS).verify(*signed()) == "AKIDEXAMPLE"


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:4566/000000000000/my-queue",
        "http://127.0.0.1:4566/a/b/../c//d?Action=ListQueues&QueueNamePrefix=a%20b&Z=%2F&A=",
        "http://localhost:4566/odd%20path/~x?x=1&x=0",
    ],
)
def test_paths_and_query_strings_verify(url: str) -> None:
    method, target, headers, body = signed(url=url, method="GET", body=b"")
    assert SigV4Verifier(KEYS).verify(method, target, headers, body) == "AKIDEXAMPLE"


def test_query_protocol_form_body_verifies() -> None:
    body = b"Action=SendMessage&QueueUrl=http%3A%2F%2Fh%2Fq&MessageBody=%3Ca%3E+%C3%A9"
    request = signed(body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert SigV4Verifier(KEYS).verify(*request) == "AKIDEXAMPLE"


def test_wrong_secret() -> None:
    with pytest.raises(AwsError) as info:
        SigV4Verifier(KEYS).verify(*signed(secret="not-the-secret"))
    assert (info.value.code, info.value.status) == ("SignatureDoesNotMatch", 403)


def test_tampered_body_and_header() -> None:
    method, target, headers, body = signed()
    with pytest.raises(AwsError) as info:
        SigV4Verifier(KEYS).verify(method, target, headers, body + b" ")
    assert info.value.code == "SignatureDoesNotMatch"
    headers = {**headers, "x-amz-target": "AmazonSQS.DeleteQueue"}
    with pytest.raises(AwsError) as info:
        SigV4Verifier(KEYS).verify(method, target, headers, body)
    assert info.value.code == "SignatureDoesNotMatch"


def test_unknown_access_key() -> None:
    with pytest.raises(AwsError) as info:
        SigV4Verifier(KEYS).verify(*signed(key="AKIDUNKNOWN"))
    assert (info.value.code, info.value.status) == ("InvalidClientTokenId", 403)


@pytest.mark.parametrize("skew_s", [-16 * 60, 16 * 60])
def test_skewed_date_is_refused(skew_s: float) -> None:
    verifier = SigV4Verifier(KEYS, clock=lambda: time.time() + skew_s)
    with pytest.raises(AwsError) as info:
        verifier.verify(*signed())
    assert (info.value.code, info.value.status) == ("SignatureDoesNotMatch", 403)
    assert info.value.message.startswith("Signature expired")


@pytest.mark.parametrize("skew_s", [-14 * 60, 14 * 60])
def test_skew_within_15_minutes_is_accepted(skew_s: float) -> None:
    verifier = SigV4Verifier(KEYS, clock=lambda: time.time() + skew_s)
    assert verifier.verify(*signed()) == "AKIDEXAMPLE"


def test_missing_date_header() -> None:
    method, target, headers, body = signed()
    del headers["x-amz-date"]
    with pytest.raises(AwsError) as info:
        SigV4Verifier(KEYS).verify(method, target, headers, body)
    assert (info.value.code, info.value.status) == ("IncompleteSignature", 403)


@pytest.mark.parametrize("drop", ["Credential", "SignedHeaders", "Signature"])
def test_incomplete_authorization_header(drop: str) -> None:
    method, target, headers, body = signed()
    algorithm, _, rest = headers["authorization"].partition(" ")
    parts = [p for p in rest.split(", ") if not p.startswith(drop + "=")]
    headers["authorization"] = f"{algorithm} {', '.join(parts)}"
    with pytest.raises(AwsError) as info:
        SigV4Verifier(KEYS).verify(method, target, headers, body)
    assert (info.value.code, info.value.status) == ("IncompleteSignature", 403)


def test_signed_header_absent_from_request() -> None:
    method, target, headers, body = signed()
    del headers["x-amz-target"]
    with pytest.raises(AwsError) as info:
        SigV4Verifier(KEYS).verify(method, target, headers, body)
    assert info.value.code == "IncompleteSignature"


def test_no_authentication_at_all() -> None:
    with pytest.raises(AwsError) as info:
        SigV4Verifier(KEYS).verify("POST", "/", {"host": "h"}, b"")
    assert (info.value.code, info.value.status) == ("MissingAuthenticationToken", 403)


def test_other_algorithms_are_incomplete() -> None:
    headers = {"host": "h", "authorization": "AWS AKIDEXAMPLE:c2lnbmF0dXJl"}
    with pytest.raises(AwsError) as info:
        SigV4Verifier(KEYS).verify("POST", "/", headers, b"")
    assert info.value.code == "IncompleteSignature"


def presigned(expires: int = 300) -> tuple[str, str, dict[str, str], bytes]:
    request = AWSRequest(
        method="GET", url="http://localhost:4566/?Action=ListQueues&QueueNamePrefix=a"
    )
    SigV4QueryAuth(
        Credentials("AKIDEXAMPLE", KEYS["AKIDEXAMPLE"]), "sqs", "us-east-1", expires
    ).add_auth(request)
    parts = urlsplit(request.url)
    return "GET", f"{parts.path}?{parts.query}", {"host": parts.netloc}, b""


def test_presigned_url_verifies_and_expires() -> None:
    assert SigV4Verifier(KEYS).verify(*presigned()) == "AKIDEXAMPLE"
    later = SigV4Verifier(KEYS, clock=lambda: time.time() + 301)
    with pytest.raises(AwsError) as info:
        later.verify(*presigned())
    assert info.value.code == "SignatureDoesNotMatch"
    method, target, headers, body = presigned()
    with pytest.raises(AwsError) as info:
        SigV4Verifier(KEYS).verify(
            method, target.replace("QueueNamePrefix=a", "QueueNamePrefix=b"), headers, body
        )
    assert info.value.code == "SignatureDoesNotMatch"
