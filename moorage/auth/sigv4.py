"""AWS Signature Version 4 verification for requests as they arrive: raw method, target and header bytes.

The canonical request is built the way botocore builds it when it signs (botocore/auth.py):

- path: every service but S3 signs ``quote(remove_dot_segments(path), safe="/~")`` of the path it sent,
  so an already percent-encoded path is encoded a second time (``SigV4Auth._normalize_url_path``); S3
  signs the path exactly as sent (``S3SigV4Auth._normalize_url_path``).
- query: each name and value is percent-decoded and re-encoded with only ``A-Za-z0-9-_.~`` left bare,
  then the pairs are sorted by (name, value). botocore sends that form already, so for its requests
  this is the string it signed, and for other clients it is the form AWS itself computes.
- headers: those named in SignedHeaders, values with runs of whitespace squeezed to one space.
- payload: the body's SHA-256 for every service but S3 (the hash is recomputed here, never taken from
  the client); for S3 the ``x-amz-content-sha256`` header (``UNSIGNED-PAYLOAD`` for presigned URLs),
  which the S3 proxy must check against the body as it streams (``Caller.payload_sha256``).

Verification costs a few microseconds: the signing key is derived once per (secret, day, region,
service) and kept, and the non-S3 canonical path of a target is cached.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import quote, unquote, unquote_to_bytes

from botocore.utils import normalize_url_path

from moorage.auth.keys import KeyRing
from moorage.http.server import announces_body

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600  # AWS's limit on X-Amz-Expires: one week

_HEX64 = re.compile(r"[0-9a-f]{64}")
_UNRESERVED = re.compile(rb"[A-Za-z0-9\-_.~]*")
_SIGNED_HEADERS = re.compile(r"[a-z0-9\-_.]+(;[a-z0-9\-_.]+)*")
_AMZ_DATE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")
_BOTOCORE_AUTH = re.compile(
    rb"AWS4-HMAC-SHA256 Credential=([^,\s]+), SignedHeaders=([a-z0-9;\-_.]+), Signature=([0-9a-f]{64})"
)
_QUERY_AUTH = frozenset(
    {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"}
)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who signed a request, once its signature is verified."""

    access_key: str
    account: str
    region: str
    service: str
    # S3 only: the body hash the S3 proxy must check as it streams the body
    # (None: UNSIGNED-PAYLOAD, STREAMING-*, no body, or a body already checked here)
    payload_sha256: str | None


class AuthFailure(Exception):
    """Why a request is refused. ``kind`` is one of: missing, unknown-key, bad-signature, skewed,
    expired, bad-body-hash, malformed. ``message`` is AWS's wording for the JSON and query APIs;
    ``extra`` holds the fields S3 adds to its error (RequestTime, CanonicalRequest, ...)."""

    KINDS = frozenset(
        {
            "missing",
            "unknown-key",
            "bad-signature",
            "skewed",
            "expired",
            "bad-body-hash",
            "malformed",
            "unsigned-headers",
            "wrong-service",
        }
    )

    def __init__(
        self, kind: str, message: str, *, presigned: bool = False, extra: Mapping[str, str] | None = None
    ) -> None:
        assert kind in self.KINDS, kind
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.presigned = presigned
        self.extra: dict[str, str] = dict(extra or {})

    def __repr__(self) -> str:
        return f"AuthFailure(kind={self.kind!r}, message={self.message!r})"


class _Signed(NamedTuple):
    """What the client claims: parsed from the Authorization header or the presigned query."""

    access_key: str
    date: str  # YYYYMMDD from the credential scope
    region: str
    service: str
    signed_headers: str
    signature: bytes
    timestamp: str  # YYYYMMDDTHHMMSSZ, as signed
    expires: int | None  # presigned only
    content_sha256: str | None  # presigned only: X-Amz-Content-Sha256 if in the query


_SHA256 = hashlib.sha256()


def _sha256_hex(data: bytes) -> str:
    """sha256(data).hexdigest(), from a copy of an empty hash (cheaper than a new one with OpenSSL 3)."""
    digest = _SHA256.copy()
    digest.update(data)
    return digest.hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, msg.encode("utf-8"), "sha256")


@lru_cache(maxsize=64)
def _day_epoch(day: str) -> float:
    y, mo, d = int(day[:4]), int(day[4:6]), int(day[6:8])
    if not (1 <= mo <= 12 and 1 <= d <= calendar.monthrange(y, mo)[1]):
        raise ValueError(day)
    return float(calendar.timegm((y, mo, d, 0, 0, 0)))


@lru_cache(maxsize=256)
def _epoch(timestamp: str) -> float:
    """Seconds since the epoch of a YYYYMMDDTHHMMSSZ string already matched by _AMZ_DATE."""
    h, mi, s = int(timestamp[9:11]), int(timestamp[11:13]), int(timestamp[13:15])
    if h > 23 or mi > 59 or s > 60:
        raise ValueError(timestamp)
    return _day_epoch(timestamp[:8]) + h * 3600 + mi * 60 + s


@lru_cache(maxsize=256)
def _botocore_signed(credential: bytes, signed_headers: bytes, amz_date: bytes) -> _Signed:
    """The parsed scope of a header signature, without its signature: the same for every request a
    client signs within one second, so kept (failures are not cached: they raise)."""
    return SigV4Verifier._signed(
        credential.decode("latin-1"), signed_headers.decode("latin-1"), "", amz_date.decode("latin-1")
    )


@lru_cache(maxsize=64)
def _header_names(signed_headers: str) -> tuple[bytes, ...]:
    return tuple(signed_headers.encode("latin-1").split(b";"))


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _amz(epoch: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(epoch))


@lru_cache(maxsize=4096)
def _normalized_path(raw: bytes) -> bytes:
    """SigV4Auth._normalize_url_path of the path as sent (percent signs encoded again)."""
    path = normalize_url_path(raw.decode("latin-1"))
    return quote(path.encode("latin-1"), safe="/~").encode("ascii")


def _canonical_part(part: bytes) -> bytes:
    if _UNRESERVED.fullmatch(part):
        return part
    return quote(unquote_to_bytes(part), safe="-_.~").encode("ascii")


def _split_query(query: bytes) -> list[tuple[bytes, bytes]]:
    pairs = []
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        pairs.append((name, value))
    return pairs


def _canonical_query(pairs: list[tuple[bytes, bytes]], skip_signature: bool) -> bytes:
    canonical = []
    for name, value in pairs:
        key = _canonical_part(name)
        if skip_signature and key == b"X-Amz-Signature":
            continue
        canonical.append((key, _canonical_part(value)))
    canonical.sort()
    return b"&".join(b"%s=%s" % kv for kv in canonical)


@lru_cache(maxsize=1024)  # host, content type, the second's x-amz-date: the same values again and again
def _header_value(value: bytes) -> bytes:
    if value.isascii():
        return b" ".join(value.split())
    # http.client sends botocore's str values as latin-1; the canonical request hashes them as UTF-8
    return " ".join(value.decode("latin-1").split()).encode("utf-8")


class _Signer:
    """HMAC-SHA256 with one key, its inner and outer hashes of the padded key computed once: each
    signature is then two copies and two short updates (RFC 2104, as hmac does it inside)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        block = key.ljust(64, b"\0")  # the signing key is a 32-byte digest, shorter than the block
        self._inner = hashlib.sha256(bytes(byte ^ 0x36 for byte in block))
        self._outer = hashlib.sha256(bytes(byte ^ 0x5C for byte in block))

    def hex(self, message: bytes) -> str:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class _QuickScope(NamedTuple):
    signed_at: float
    names: tuple[bytes, ...]
    prefix: bytes  # the string to sign up to the canonical request's hash
    signer: _Signer
    caller: Caller


class SigV4Verifier:
    """Checks AWS4-HMAC-SHA256 signatures (Authorization header or presigned query) against a KeyRing."""

    def __init__(
        self,
        keys: KeyRing,
        now: Callable[[], float] = time.time,
        max_skew_seconds: float = 900.0,
    ) -> None:
        self._keys = keys
        self._now = now
        self._max_skew = max_skew_seconds
        # (secret, day, region, service) -> an HMAC keyed with the derived signing key, copied per use
        # (a copy skips the key set-up that a fresh HMAC repeats)
        self._signing_keys: dict[tuple[str, str, str, str], _Signer] = {}
        self._scopes: dict[tuple[bytes, bytes, bytes], _QuickScope] = {}

    @property
    def keys(self) -> KeyRing:
        """The accepted keys (StsApi takes them to name a caller's IAM user)."""
        return self._keys

    def verify(self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes | None) -> Caller:
        """The verified caller, or AuthFailure. ``body`` is None for S3 (its hash is the header's)."""
        if body is not None and url[:1] == b"/" and b"?" not in url:
            caller = self._quick(method, url, headers, body)
            if caller is not None:
                return caller
        return self._verify(method, url, headers, body)

    def _quick(self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes) -> Caller | None:
        """The common case on the hot path, cheaply: a botocore-style header signature over a request
        without a query string, for a service other than S3, that checks out. Anything else (or any
        doubt) returns None, and `_verify` decides with the full checks and AWS's messages."""
        authorization = headers.get(b"authorization")
        amz_date = headers.get(b"x-amz-date")
        if authorization is None or amz_date is None:
            return None
        match = _BOTOCORE_AUTH.fullmatch(authorization)
        if match is None:
            return None
        credential, signed_headers, signature = match.group(1, 2, 3)
        try:
            scope = self._quick_scope(credential, signed_headers, amz_date)
        except (AuthFailure, ValueError):
            return None
        if scope is None or abs(self._now() - scope.signed_at) > self._max_skew:
            return None
        claimed = headers.get(b"x-amz-content-sha256")
        payload = _sha256_hex(body) if body else EMPTY_SHA256
        if claimed is not None and claimed.decode("latin-1").strip() != payload:
            return None
        canonical = b"%s\n%s\n\n%s\n\n%s\n%s" % (
            method.upper(),
            _normalized_path(url),
            b"\n".join([b"%s:%s" % (name, _header_value(headers.get(name, b""))) for name in scope.names]),
            signed_headers,
            payload.encode("latin-1"),
        )
        expected = scope.signer.hex(scope.prefix + _sha256_hex(canonical).encode("latin-1"))
        if not hmac.compare_digest(expected.encode("latin-1"), signature):
            return None
        return scope.caller

    def _quick_scope(self, credential: bytes, signed_headers: bytes, amz_date: bytes) -> _QuickScope | None:
        """What `_quick` needs of one scope and second, kept: the same for every request a client signs
        within that second."""
        cache_key = (credential, signed_headers, amz_date)
        scope = self._scopes.get(cache_key)
        if scope is None:
            signed = _botocore_signed(credential, signed_headers, amz_date)
            key = self._keys.get(signed.access_key)
            names = _header_names(signed.signed_headers)
            if key is None or signed.service == "s3" or b"host" not in names:
                return None
            scope = _QuickScope(
                signed_at=_epoch(signed.timestamp),
                names=names,
                prefix=(
                    f"{ALGORITHM}\n{signed.timestamp}\n{signed.date}/{signed.region}/{signed.service}"
                    "/aws4_request\n"
                ).encode(),
                signer=self._signing_key(key.secret, signed.date, signed.region, signed.service),
                caller=Caller(signed.access_key, key.account, signed.region, signed.service, None),
            )
            if len(self._scopes) >= 1024:
                self._scopes.clear()
            self._scopes[cache_key] = scope
        return scope

    def _verify(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes | None
    ) -> Caller:
        path, _, query = url.partition(b"?")
        if not path.startswith(b"/"):  # absolute-form target: keep only the path
            path = b"/" + path.partition(b"://")[2].partition(b"/")[2]
        pairs = _split_query(query) if query else []
        authorization = headers.get(b"authorization")
        presigned = b"X-Amz-Signature=" in query or b"X-Amz-Credential=" in query
        if authorization is None and not presigned and body is None and b"AWSAccessKeyId=" in query:
            from moorage.auth.sigv2 import verify_presigned_v2  # S3's older presigned URLs

            return verify_presigned_v2(self._keys, self._now(), method, url, headers, "us-east-1")
        if authorization is not None:
            if presigned:
                raise AuthFailure("malformed", "Only one auth mechanism allowed; both header and query auth.")
            signed = self._from_header(authorization, headers)
        elif presigned:
            signed = self._from_query(pairs)
        else:
            raise AuthFailure("missing", "Missing Authentication Token")
        key = self._keys.get(signed.access_key)
        if key is None:
            raise AuthFailure(
                "unknown-key",
                "The security token included in the request is invalid.",
                presigned=presigned,
                extra={"AWSAccessKeyId": signed.access_key},
            )
        self._check_time(signed, presigned)
        payload, caller_hash = self._payload(signed, headers, body, presigned)

        canonical_path = path if signed.service == "s3" else _normalized_path(path)
        if canonical_path == b"":
            canonical_path = b"/"
        names = _header_names(signed.signed_headers)
        if b"host" not in names:
            raise AuthFailure("malformed", "'Host' must be a signed header.", presigned=presigned)
        if signed.service == "s3":  # what the store acts on must be signed (x-amz-copy-source, ACLs, …)
            refuse_unsigned_amz_headers(headers, names, presigned)
        canonical_request = b"\n".join(
            (
                method.upper(),
                canonical_path,
                _canonical_query(pairs, skip_signature=presigned) if pairs else b"",
                *[b"%s:%s" % (name, _header_value(headers.get(name, b""))) for name in names],
                b"",
                signed.signed_headers.encode("latin-1"),
                payload.encode("latin-1"),
            )
        )
        scope = f"{signed.date}/{signed.region}/{signed.service}/aws4_request"
        string_to_sign = f"{ALGORITHM}\n{signed.timestamp}\n{scope}\n{_sha256_hex(canonical_request)}"
        signing_key = self._signing_key(key.secret, signed.date, signed.region, signed.service)
        expected = signing_key.hex(string_to_sign.encode("utf-8"))
        if not hmac.compare_digest(expected.encode("ascii"), signed.signature):
            canonical_text = canonical_request.decode("utf-8", "replace")
            raise AuthFailure(
                "bad-signature",
                "The request signature we calculated does not match the signature you provided. Check "
                "your AWS Secret Access Key and signing method. Consult the service documentation for "
                f"details.\n\nThe Canonical String for this request should have been\n'{canonical_text}'"
                f"\n\nThe String-to-Sign should have been\n'{string_to_sign}'\n",
                presigned=presigned,
                extra={
                    "AWSAccessKeyId": signed.access_key,
                    "StringToSign": string_to_sign,
                    "SignatureProvided": signed.signature.decode("latin-1"),
                    "CanonicalRequest": canonical_text,
                },
            )
        return Caller(signed.access_key, key.account, signed.region, signed.service, caller_hash)

    def _signing_key(self, secret: str, date: str, region: str, service: str) -> _Signer:
        cache_key = (secret, date, region, service)
        signing_key = self._signing_keys.get(cache_key)
        if signing_key is None:
            k = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service), "aws4_request")
            if len(self._signing_keys) >= 1024:
                self._signing_keys.clear()
            signing_key = self._signing_keys[cache_key] = _Signer(k)
        return signing_key

    def _from_header(self, authorization: bytes, headers: Mapping[bytes, bytes]) -> _Signed:
        amz_date = headers.get(b"x-amz-date")
        fast = _BOTOCORE_AUTH.fullmatch(authorization) if amz_date is not None else None
        if fast is not None and amz_date is not None:  # the layout botocore writes
            credential, signed_headers, signature = fast.group(1, 2, 3)
            c = _botocore_signed(credential, signed_headers, amz_date)
            return _Signed(
                c.access_key,
                c.date,
                c.region,
                c.service,
                c.signed_headers,
                signature,
                c.timestamp,
                None,
                None,
            )
        text = authorization.decode("latin-1")
        algorithm, _, rest = text.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise AuthFailure(
                "malformed",
                f"Unsupported authorization type {algorithm!r}: only {ALGORITHM} (Signature Version 4) is "
                "accepted.",
            )
        fields: dict[str, str] = {}
        for part in rest.split(","):
            name, eq, value = part.strip().partition("=")
            if eq:
                fields[name] = value.strip()
        missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)]
        if missing:
            raise AuthFailure(
                "malformed",
                f"Authorization header requires '{missing[0]}' parameter. Authorization header requires "
                "existence of either a 'X-Amz-Date' or a 'Date' header. "
                f"Authorization={text}",
            )
        if amz_date is not None:
            timestamp = amz_date.decode("latin-1").strip()
        elif (date := headers.get(b"date")) is not None:
            try:
                timestamp = _amz(parsedate_to_datetime(date.decode("latin-1")).timestamp())
            except (TypeError, ValueError, IndexError):
                raise AuthFailure("malformed", f"Date header {date!r} is not an HTTP date.") from None
        else:
            raise AuthFailure(
                "malformed",
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
            )
        return self._signed(fields["Credential"], fields["SignedHeaders"], fields["Signature"], timestamp)

    def _from_query(self, pairs: list[tuple[bytes, bytes]]) -> _Signed:
        params: dict[str, str] = {}
        for name, value in pairs:
            if name.startswith(b"X-Amz-"):
                params[name.decode("latin-1")] = unquote(value.decode("latin-1"), encoding="latin-1")
        missing = sorted(n for n in (*_QUERY_AUTH, "X-Amz-Signature") if not params.get(n))
        if missing:
            raise AuthFailure(
                "malformed",
                "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, "
                f"X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters; "
                f"missing {', '.join(missing)}.",
                presigned=True,
            )
        if params["X-Amz-Algorithm"] != ALGORITHM:
            raise AuthFailure("malformed", f'X-Amz-Algorithm only supports "{ALGORITHM}"', presigned=True)
        expires_text = params["X-Amz-Expires"]
        if not expires_text.isdigit() or not 0 < int(expires_text) <= MAX_PRESIGN_EXPIRES:
            raise AuthFailure(
                "malformed",
                "X-Amz-Expires must be a whole number of seconds from 1 to "
                f"{MAX_PRESIGN_EXPIRES} (one week).",
                presigned=True,
            )
        signed = self._signed(
            params["X-Amz-Credential"],
            params["X-Amz-SignedHeaders"],
            params["X-Amz-Signature"],
            params["X-Amz-Date"],
            presigned=True,
        )
        return _Signed(
            signed.access_key,
            signed.date,
            signed.region,
            signed.service,
            signed.signed_headers,
            signed.signature,
            signed.timestamp,
            int(expires_text),
            params.get("X-Amz-Content-Sha256"),
        )

    @staticmethod
    def _signed(
        credential: str, signed_headers: str, signature: str, timestamp: str, presigned: bool = False
    ) -> _Signed:
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request" or not all(parts):
            raise AuthFailure(
                "malformed",
                f"Credential should be scoped to a valid region and service: it must be "
                f"ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request, not {credential!r}.",
                presigned=presigned,
            )
        if not _SIGNED_HEADERS.fullmatch(signed_headers):
            raise AuthFailure(
                "malformed",
                "SignedHeaders must be lower-case header names separated by ';', "
                f"not {signed_headers[:200]!r}.",
                presigned=presigned,
            )
        if not _AMZ_DATE.fullmatch(timestamp):
            raise AuthFailure(
                "malformed",
                f"X-Amz-Date must be in the ISO8601 basic format YYYYMMDD'T'HHMMSS'Z', not {timestamp!r}.",
                presigned=presigned,
            )
        if parts[1] != timestamp[:8]:
            raise AuthFailure(
                "malformed",
                f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
                f"HTTP: '{parts[1]}' != '{timestamp[:8]}', from '{timestamp}'.",
                presigned=presigned,
            )
        return _Signed(
            parts[0],
            parts[1],
            parts[2],
            parts[3],
            signed_headers,
            signature.encode("latin-1"),
            timestamp,
            None,
            None,
        )

    def _check_time(self, signed: _Signed, presigned: bool) -> None:
        try:
            signed_at = _epoch(signed.timestamp)
        except ValueError:
            raise AuthFailure(
                "malformed", f"X-Amz-Date {signed.timestamp!r} is not a valid date.", presigned=presigned
            ) from None
        now = self._now()
        if signed_at - now > self._max_skew:
            raise AuthFailure(
                "skewed",
                f"Signature not yet current: {signed.timestamp} is still later than "
                f"{_amz(now + self._max_skew)} ({_amz(now)} + {self._max_skew / 60:g} min.)",
                presigned=presigned,
                extra=self._skew_extra(signed, now),
            )
        if signed.expires is not None:
            if now > signed_at + signed.expires:
                raise AuthFailure(
                    "expired",
                    f"Signature expired: {_amz(signed_at + signed.expires)} is now earlier than "
                    f"{_amz(now)} ({signed.timestamp} + {signed.expires} s)",
                    presigned=True,
                    extra={
                        "X-Amz-Expires": str(signed.expires),
                        "Expires": time.strftime(
                            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(signed_at + signed.expires)
                        ),
                        "ServerTime": _iso(now),
                    },
                )
        elif now - signed_at > self._max_skew:
            raise AuthFailure(
                "skewed",
                f"Signature expired: {signed.timestamp} is now earlier than "
                f"{_amz(now - self._max_skew)} ({_amz(now)} - {self._max_skew / 60:g} min.)",
                extra=self._skew_extra(signed, now),
            )

    def _skew_extra(self, signed: _Signed, now: float) -> dict[str, str]:
        return {
            "RequestTime": signed.timestamp,
            "ServerTime": _iso(now),
            "MaxAllowedSkewMilliseconds": str(int(self._max_skew * 1000)),
        }

    @staticmethod
    def _payload(
        signed: _Signed, headers: Mapping[bytes, bytes], body: bytes | None, presigned: bool
    ) -> tuple[str, str | None]:
        """The payload hash to sign with, and the one the S3 proxy must still check (or None)."""
        header = headers.get(b"x-amz-content-sha256")
        claimed = header.decode("latin-1").strip() if header is not None else signed.content_sha256
        if body is not None:
            actual = _sha256_hex(body) if body else EMPTY_SHA256
            if claimed is None or claimed == actual:
                return actual, None
            raise AuthFailure(
                "bad-body-hash",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                presigned=presigned,
                extra={"ClientComputedContentSHA256": claimed, "S3ComputedContentSHA256": actual},
            )
        # S3: the body streams later; sign with the claimed hash and hand it to the proxy to check
        if claimed is None:
            if presigned:
                return UNSIGNED_PAYLOAD, None
            raise AuthFailure(
                "malformed",
                "Missing required header for this request: x-amz-content-sha256",
                extra={"ArgumentName": "x-amz-content-sha256"},
            )
        if claimed == UNSIGNED_PAYLOAD or claimed.startswith("STREAMING-"):
            return claimed, None
        if not _HEX64.fullmatch(claimed):
            raise AuthFailure(
                "malformed",
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, or a valid sha256 value.",
                presigned=presigned,
                extra={"ArgumentName": "x-amz-content-sha256", "ArgumentValue": claimed},
            )
        if claimed == EMPTY_SHA256 and announces_body(headers):
            return claimed, claimed  # an announced body must really be empty: the proxy checks it
        if claimed == EMPTY_SHA256 or not announces_body(headers):
            if claimed != EMPTY_SHA256:
                raise AuthFailure(
                    "bad-body-hash",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                    presigned=presigned,
                    extra={"ClientComputedContentSHA256": claimed, "S3ComputedContentSHA256": EMPTY_SHA256},
                )
            return claimed, None
        return claimed, claimed


def refuse_unsigned_amz_headers(
    headers: Mapping[bytes, bytes], signed: tuple[bytes, ...] | frozenset[bytes], presigned: bool
) -> None:
    """S3 acts on x-amz-* headers (a copy source, an ACL, metadata): one the signature does not cover
    would let whoever holds a presigned URL change what it does. AWS refuses such a request too."""
    unsigned = sorted(
        name
        for name in headers
        if name.startswith(b"x-amz-") and name not in signed and name != b"x-amz-content-sha256"
    )
    if unsigned:
        listed = b", ".join(unsigned).decode("latin-1")
        raise AuthFailure(
            "unsigned-headers",
            f"There were headers present in the request which were not signed: {listed}",
            presigned=presigned,
            extra={"HeadersNotSigned": listed},
        )
