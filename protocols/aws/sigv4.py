"""AWS Signature Version 4, checked on the server side.

The client signs ``HMAC(key, "AWS4-HMAC-SHA256\\n{X-Amz-Date}\\n{scope}\\n{hex sha256 of the
canonical request}")`` with ``key`` derived from the secret by HMAC chains over the date,
region, service and ``aws4_request``. The canonical request is ``METHOD\\n{path}\\n{query}\\n
{headers}\\n\\n{signed header names}\\n{payload hash}`` where, as botocore computes it for every
service but S3: the path is the request path with dot segments and repeated slashes removed and
percent-encoded again (``quote(path, safe="/~")``); the query is the ``key=value`` pairs sorted,
each RFC 3986-encoded; headers are the signed ones, lower-cased, sorted, values trimmed with inner
runs of spaces collapsed; the payload hash is ``X-Amz-Content-SHA256`` when sent, else the
SHA-256 of the body.

Two forms are accepted: the ``Authorization: AWS4-HMAC-SHA256 Credential=AKID/20240101/
us-east-1/sqs/aws4_request, SignedHeaders=host;x-amz-date, Signature=...`` header, and the
presigned query string (``X-Amz-Algorithm``, ``X-Amz-Credential``, ``X-Amz-Date``,
``X-Amz-Expires``, ``X-Amz-SignedHeaders``, ``X-Amz-Signature``). A request date more than 15
minutes away from the server's clock is refused as AWS does (``SignatureDoesNotMatch``,
"Signature expired"), as is a presigned URL past its expiry. All failures are
:class:`AwsError` with status 403.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_tz
from urllib.parse import quote, unquote

from protocols.aws.errors import AwsError

ALGORITHM = "AWS4-HMAC-SHA256"
CLOCK_SKEW_S = 15 * 60
PRESIGNED_EXPIRES_MAX_S = 7 * 24 * 3600
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credential:
    """The parts of ``Credential=AKID/20240101/us-east-1/sqs/aws4_request``."""

    access_key: str
    date: str
    region: str
    service: str
    terminator: str


@dataclass(frozen=True)
class SignedRequest:
    credential: Credential
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    presigned: bool
    expires_s: int | None


def parse_credential(text: str) -> Credential | None:
    parts = text.strip().split("/")
    if len(parts) != 5 or not parts[0]:
        return None
    return Credential(*parts)


def authorization_credential(headers: Mapping[str, str], query: str = "") -> Credential | None:
    """The credential scope of a request, signed or not verified, for routing and logging."""
    auth = headers.get("authorization", "")
    if auth.startswith(ALGORITHM):
        for part in auth[len(ALGORITHM) :].split(","):
            name, _, value = part.strip().partition("=")
            if name == "Credential":
                return parse_credential(value)
        return None
    if "X-Amz-Credential=" in query:
        for pair in query.split("&"):
            name, _, value = pair.partition("=")
            if name == "X-Amz-Credential":
                return parse_credential(unquote(value))
    return None


def _incomplete(message: str) -> AwsError:
    return AwsError("IncompleteSignature", message, status=403)


def _parse_header(auth: str) -> tuple[Credential, tuple[str, ...], str]:
    fields: dict[str, str] = {}
    for part in auth[len(ALGORITHM) :].split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value.strip()
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in fields]
    if missing:
        raise _incomplete(
            f"Authorization header requires '{missing[0]}' parameter. Authorization={auth[:256]}"
        )
    credential = parse_credential(fields["Credential"])
    if credential is None:
        raise _incomplete(
            "Authorization header requires a well-formed 'Credential' parameter: "
            "AKID/yyyyMMdd/region/service/aws4_request."
        )
    signed = tuple(name.strip().lower() for name in fields["SignedHeaders"].split(";"))
    return credential, signed, fields["Signature"].lower()


def _split_query(query: str) -> list[tuple[str, str]]:
    pairs = []
    for pair in query.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            pairs.append((unquote(key), unquote(value)))
    return pairs


def _parse_amz_date(text: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        return None


def _canonical_path(path: str) -> str:
    segments = [seg for seg in path.split("/") if seg and seg != "."]
    output: list[str] = []
    for seg in segments:
        if seg == "..":
            if output:
                output.pop()
        else:
            output.append(seg)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and output else ""
    normalized = first + "/".join(output) + last
    return quote(normalized or "/", safe="/~")


def canonical_query(pairs: list[tuple[str, str]]) -> str:
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class SigV4Verifier:
    """Checks SigV4 signatures against ``keys`` (access key id -> secret access key)."""

    def __init__(self, keys: dict[str, str], *, clock: Callable[[], float] = time.time) -> None:
        self.keys = dict(keys)
        self.clock = clock

    def verify(
        self, method: str, path_and_query: str, headers: Mapping[str, str], body: bytes
    ) -> str:
        """The access key the request was signed with; raises :class:`AwsError` (403) if the
        signature is missing, malformed, made with an unknown key or a wrong secret, or
        expired. ``headers`` are lower-cased, repeated ones joined with commas."""
        path, _, query = path_and_query.partition("?")
        pairs = _split_query(query)
        signed = self._signed_request(headers, pairs)
        credential = signed.credential
        secret = self.keys.get(credential.access_key)
        if secret is None:
            raise AwsError(
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
                status=403,
            )
        if credential.terminator != "aws4_request":
            raise AwsError(
                "SignatureDoesNotMatch",
                f"Credential should be scoped with a valid terminator: 'aws4_request', "
                f"not '{credential.terminator}'.",
                status=403,
            )
        when = _parse_amz_date(signed.amz_date)
        if when is None:
            raise _incomplete(f"Date must be in ISO-8601 'basic format'. Got '{signed.amz_date}'.")
        if signed.amz_date[:8] != credential.date:
            raise AwsError(
                "SignatureDoesNotMatch",
                f"Credential should be scoped to a valid date, not '{credential.date}'.",
                status=403,
            )
        self._check_time(signed, when)
        for name in ("host",):
            if name not in signed.signed_headers:
                raise AwsError(
                    "SignatureDoesNotMatch",
                    "'Host' must be a 'SignedHeader' in the AWS Authorization.",
                    status=403,
                )
        missing = [name for name in signed.signed_headers if name not in headers]
        if missing:
            raise _incomplete(f"The signed header '{missing[0]}' is not in the request.")
        canonical_headers = "".join(
            f"{name}:{' '.join(headers[name].split())}\n" for name in sorted(signed.signed_headers)
        )
        if signed.presigned:
            query_pairs = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
        else:
            query_pairs = pairs
        payload_hash = headers.get("x-amz-content-sha256") or (
            hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        )
        canonical = "\n".join(
            [
                method.upper(),
                _canonical_path(path),
                canonical_query(query_pairs),
                canonical_headers,
                ";".join(sorted(signed.signed_headers)),
                payload_hash,
            ]
        )
        scope = f"{credential.date}/{credential.region}/{credential.service}/aws4_request"
        string_to_sign = "\n".join(
            [ALGORITHM, signed.amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        key = signing_key(secret, credential.date, credential.region, credential.service)
        expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signed.signature):
            raise AwsError(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided."
                " Check your AWS Secret Access Key and signing method. Consult the service"
                " documentation for details.",
                status=403,
            )
        return credential.access_key

    def _signed_request(
        self, headers: Mapping[str, str], pairs: list[tuple[str, str]]
    ) -> SignedRequest:
        auth = headers.get("authorization")
        if auth is not None:
            if not auth.startswith(ALGORITHM + " "):
                raise _incomplete(
                    f"Authorization header requires the {ALGORITHM} algorithm. "
                    f"Authorization={auth[:64]}"
                )
            credential, signed_headers, signature = _parse_header(auth)
            amz_date = headers.get("x-amz-date") or _http_date(headers.get("date", ""))
            if not amz_date:
                raise _incomplete(
                    "Authorization header requires existence of either a 'X-Amz-Date' or a"
                    " 'Date' header."
                )
            return SignedRequest(credential, signed_headers, signature, amz_date, False, None)
        query = dict(pairs)
        if "X-Amz-Signature" in query or "X-Amz-Algorithm" in query:
            missing = [
                name
                for name in (
                    "X-Amz-Algorithm",
                    "X-Amz-Credential",
                    "X-Amz-Date",
                    "X-Amz-SignedHeaders",
                    "X-Amz-Signature",
                )
                if name not in query
            ]
            if missing:
                raise _incomplete(f"AWS query-string parameters must include '{missing[0]}'.")
            if query["X-Amz-Algorithm"] != ALGORITHM:
                raise _incomplete(f"X-Amz-Algorithm only supports '{ALGORITHM}'.")
            scoped = parse_credential(query["X-Amz-Credential"])
            if scoped is None:
                raise _incomplete("X-Amz-Credential is not well-formed.")
            expires: int | None = None
            if "X-Amz-Expires" in query:
                try:
                    expires = int(query["X-Amz-Expires"])
                except ValueError:
                    raise _incomplete("X-Amz-Expires must be a number of seconds.") from None
                if not 0 <= expires <= PRESIGNED_EXPIRES_MAX_S:
                    raise _incomplete("X-Amz-Expires must be between 0 and 604800 seconds.")
            signed_headers = tuple(
                name.strip().lower() for name in query["X-Amz-SignedHeaders"].split(";")
            )
            return SignedRequest(
                scoped,
                signed_headers,
                query["X-Amz-Signature"].lower(),
                query["X-Amz-Date"],
                True,
                expires,
            )
        raise AwsError(
            "MissingAuthenticationToken", "Request is missing Authentication Token", status=403
        )

    def _check_time(self, signed: SignedRequest, when: float) -> None:
        now = self.clock()
        if signed.presigned and signed.expires_s is not None:
            if now > when + signed.expires_s or when > now + CLOCK_SKEW_S:
                raise AwsError(
                    "SignatureDoesNotMatch",
                    "Signature expired: the presigned URL is no longer valid.",
                    status=403,
                )
            return
        if abs(now - when) > CLOCK_SKEW_S:
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            if when < now:
                bound = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now - CLOCK_SKEW_S))
                detail = f"is now earlier than {bound} ({stamp} - 15 min.)"
            else:
                bound = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now + CLOCK_SKEW_S))
                detail = f"is now later than {bound} ({stamp} + 15 min.)"
            raise AwsError(
                "SignatureDoesNotMatch",
                f"Signature expired: {signed.amz_date} {detail}",
                status=403,
            )


def _http_date(text: str) -> str:
    """An RFC 1123 ``Date`` header in the ``X-Amz-Date`` form, or ``""``."""
    parsed = parsedate_tz(text) if text else None
    if parsed is None:
        return ""
    seconds = calendar.timegm(parsed[:9]) - (parsed[9] or 0)
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))
