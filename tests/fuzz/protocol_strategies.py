"""Hypothesis strategies for the wire protocols on the port besides SageMaker's: STS (awsQuery), the S3
edge (streamed to the embedded store) and SigV4 itself (Authorization headers and presigned queries).

Each strategy draws a `Probe`: the bytes to send on one connection, how many answers complete requests
in them must get, and which API family the answers are in (so the checks know which parser reads an
error). Requests cut short, or that wait for a body that never comes, expect no answer: the check
half-closes the connection and then needs an answer or a close within a bound.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from urllib.parse import quote

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

REGION = "us-west-2"
KEY_ID = "AKIAFUZZEXAMPLE00001"
SECRET = "fuzz-secret-0123456789abcdefghijklmnopqrs"
ACCOUNT = "111122223333"
BUCKET = "fz-bucket"  # created by the fixtures, with OBJECT in it
OBJECT = "fz-object"
STS_ACTIONS = ("GetCallerIdentity", "AssumeRole", "GetSessionToken", "DecodeAuthorizationMessage")
MAX_VALUE = 200 * 1024  # a "huge" parameter: past the control plane's body limit, not the URL's


@dataclass(frozen=True)
class Probe:
    """Bytes for one connection. `answers`: how many complete requests they hold (each must be
    answered, unless an earlier answer closed the connection); `family`: json, runtime, query or s3;
    `forged`: the request's signature cannot be valid, so it must be refused."""

    label: str
    data: bytes
    answers: int
    family: str
    forged: bool = False
    head: bool = False  # a HEAD request: its answer has no body


def request(method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    lines = [b"%s %s HTTP/1.1\r\n" % (method, target)]
    names = {name.lower() for name, _ in headers}
    if b"host" not in names:
        lines.append(b"Host: 127.0.0.1\r\n")
    lines += [b"%s: %s\r\n" % header for header in headers]
    if body and b"content-length" not in names and b"transfer-encoding" not in names:
        lines.append(b"Content-Length: %d\r\n" % len(body))
    return b"".join(lines) + b"\r\n" + body


_ODD = st.sampled_from(
    [
        "",
        "%",
        "%zz",
        "%00",
        "%ff",
        "%2F",
        "..",
        "../..",
        "\u00e9",
        "\U0001f600",
        "+",
        " ",
        "&",
        "=",
        ";",
        "\x7f",
    ]
)


def _text(max_size: int = 40) -> SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=max_size),
        st.lists(st.one_of(_ODD, st.text(max_size=6)), max_size=6).map("".join),
    )


def _bytes_text(max_size: int = 40) -> SearchStrategy[bytes]:
    """Bytes as they may appear on the wire: UTF-8, latin-1 or random."""
    return st.one_of(
        _text(max_size).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=max_size),
    )


# ---------------------------------------------------------------------------------------------------
# STS: awsQuery forms


@st.composite
def sts_probes(draw: st.DrawFn) -> Probe:
    action = draw(st.one_of(st.sampled_from(STS_ACTIONS), _text(20)))
    version = draw(st.sampled_from(["2011-06-15", "2011-06-15", "", "2011-06-16", "x"]))
    params: list[tuple[bytes, bytes]] = [(b"Action", quote(action).encode())]
    if draw(st.booleans()) or version:
        params.append((b"Version", version.encode()))
    for _ in range(draw(st.integers(0, 4))):
        name = draw(
            st.one_of(st.sampled_from(["RoleArn", "RoleSessionName", "DurationSeconds", "Action"]), _text(12))
        )
        value = draw(st.one_of(_text(), st.just("x" * draw(st.sampled_from([1024, MAX_VALUE])))))
        encode = draw(st.booleans())
        params.append(
            (
                quote(name).encode() if encode else name.encode("utf-8", "surrogatepass"),
                quote(value).encode() if encode else value.encode("utf-8", "surrogatepass"),
            )
        )
    params = draw(st.permutations(params))
    form = b"&".join(b"%s=%s" % pair for pair in params)
    form = draw(
        st.sampled_from(
            [
                form,
                form + b"&",
                b"&&" + form,
                form + b"&Action",
                form + b"&%zz=1",
                form + b"&\xff\xfe=\xc3",
                form.replace(b"=", b"", 1),
                form + b"&=",
            ]
        )
    )
    content_type = draw(
        st.sampled_from(
            [
                b"application/x-www-form-urlencoded; charset=utf-8",
                b"application/x-www-form-urlencoded",
                b"application/json",
                b"text/plain",
                b"",
                None,
            ]
        )
    )
    headers = [(b"Content-Type", content_type)] if content_type is not None else []
    if draw(st.booleans()):
        target = b"/?" + form
        data = request(draw(st.sampled_from([b"GET", b"GET", b"HEAD", b"DELETE"])), target, headers)
        method = data.split(b" ", 1)[0]
    else:
        data = request(b"POST", b"/", headers, form)
        method = b"POST"
    return Probe(f"STS {method.decode()} {form[:120]!r}", data, 1, "query", head=method == b"HEAD")


# ---------------------------------------------------------------------------------------------------
# The S3 edge: raw requests streamed to the store


_S3_HEADERS: list[SearchStrategy[tuple[bytes, bytes]]] = [
    st.tuples(
        st.just(b"x-amz-server-side-encryption"),
        st.sampled_from([b"aws:kms", b"AES256", b"aws:kms:dsse", b"x"]),
    ),
    st.tuples(st.just(b"x-amz-server-side-encryption-aws-kms-key-id"), _bytes_text(60)),
    st.tuples(st.just(b"x-amz-server-side-encryption-context"), _bytes_text(60)),
    st.tuples(
        st.just(b"x-amz-server-side-encryption-bucket-key-enabled"),
        st.sampled_from([b"true", b"false", b"x"]),
    ),
    st.tuples(
        st.just(b"x-amz-expected-bucket-owner"),
        st.one_of(
            st.sampled_from([ACCOUNT.encode(), b"123456789012", b"", b" 123456789012 "]), _bytes_text(14)
        ),
    ),
    st.tuples(st.just(b"x-amz-content-sha256"), st.sampled_from([b"UNSIGNED-PAYLOAD", b"x", b"0" * 64])),
    st.tuples(st.just(b"Content-Type"), _bytes_text(30)),
    st.tuples(st.just(b"Content-MD5"), _bytes_text(30)),
    st.tuples(
        st.just(b"Range"),
        st.sampled_from([b"bytes=0-1", b"bytes=5-2", b"bytes=-0", b"bytes=x", b"lines=1-2"]),
    ),
    st.tuples(st.just(b"x-amz-copy-source"), _bytes_text(40)),
    st.tuples(st.just(b"x-amz-meta-fz"), _bytes_text(40)),
    st.tuples(st.just(b"x-amz-checksum-crc32"), _bytes_text(12)),
    st.tuples(st.just(b"x-amz-decoded-content-length"), st.sampled_from([b"0", b"-1", b"99999999999", b"x"])),
    st.tuples(st.just(b"Content-Encoding"), st.sampled_from([b"aws-chunked", b"gzip", b"x"])),
    st.tuples(st.just(b"Connection"), st.sampled_from([b"close", b"keep-alive", b"upgrade"])),
    st.tuples(st.sampled_from([b"X-Fuzz", b"x-amz-acl", b"If-Match", b"x-amz-tagging"]), _bytes_text(30)),
]


def _header_safe(value: bytes) -> bytes:
    """No CR/LF (that would be another header, which other strategies cover)."""
    return value.replace(b"\r", b"").replace(b"\n", b"")


@st.composite
def s3_targets(draw: st.DrawFn) -> bytes:
    bucket = draw(
        st.sampled_from([BUCKET, BUCKET, "fz-missing", "", "Bad_Bucket", "a", "..", "%2e%2e", "x" * 70])
    )
    key = draw(
        st.one_of(st.sampled_from([OBJECT, "", "dir/", "a/../../b", "..%2F..%2Fetc", "%00", "k%ff"]), _text())
    )
    raw = f"/{bucket}/{key}" if bucket or key else "/"
    path = quote(raw.encode("utf-8", "surrogatepass"), safe="/%") if draw(st.booleans()) else raw
    target = path.encode("utf-8", "surrogatepass")
    query = draw(
        st.one_of(
            st.just(b""),
            st.sampled_from(
                [
                    b"uploads",
                    b"list-type=2&max-keys=1",
                    b"max-keys=-1",
                    b"uploadId=x&partNumber=1",
                    b"partNumber=99999",
                    b"acl",
                    b"tagging",
                    b"versioning",
                    b"delete",
                    b"location",
                    b"prefix=%ff&delimiter=%00",
                    b"X-Amz-Algorithm=x",
                    b"%",
                    b"&&=&",
                ]
            ),
            _bytes_text(30).map(lambda b: quote(b, safe="=&%").encode()),
        )
    )
    return target + (b"?" + query if query else b"")


@st.composite
def s3_probes(draw: st.DrawFn) -> Probe:
    method = draw(
        st.sampled_from([b"GET", b"PUT", b"HEAD", b"DELETE", b"POST", b"GET", b"PUT", b"OPTIONS", b"PATCH"])
    )
    target = draw(s3_targets())
    headers = [
        (name, _header_safe(value)) for name, value in draw(st.lists(st.one_of(_S3_HEADERS), max_size=5))
    ]
    body = draw(st.one_of(st.just(b""), st.binary(max_size=64), st.just(b"z" * 70000)))
    framing = draw(
        st.sampled_from(["length", "length", "chunked", "both", "short", "long", "expect", "bad-chunk"])
    )
    answers = 1
    if framing == "length":
        data = request(method, target, [*headers, (b"Content-Length", b"%d" % len(body))], body)
    elif framing == "chunked":
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]) if part)
        data = request(method, target, [*headers, (b"Transfer-Encoding", b"chunked")], chunks + b"0\r\n\r\n")
    elif framing == "both":  # Content-Length and chunked: refused by the parser, or one of them wins
        chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        framed = [(b"Content-Length", b"%d" % len(body)), (b"Transfer-Encoding", b"chunked")]
        data = request(method, target, [*headers, *framed], chunk)
        answers = 0
    elif framing == "short":  # the body is cut short: the server waits for the rest
        data = request(method, target, [*headers, (b"Content-Length", b"%d" % (len(body) + 100))], body)
        answers = 0
    elif framing == "long":  # more bytes than Content-Length: the rest is read as the next request
        data = request(method, target, [*headers, (b"Content-Length", b"%d" % (len(body) // 2))], body)
        answers = 1
    elif framing == "expect":  # 100-continue, and then no body
        length = len(body) or 10
        data = request(
            method, target, [*headers, (b"Expect", b"100-continue"), (b"Content-Length", b"%d" % length)]
        )
        answers = 0
    else:  # a chunk size that is not hex, or a chunk longer than announced
        bad = draw(
            st.sampled_from(
                [b"zz\r\nabc\r\n0\r\n\r\n", b"2\r\nabcdef\r\n0\r\n\r\n", b"ffffffffffffffffff\r\n"]
            )
        )
        data = request(method, target, [*headers, (b"Transfer-Encoding", b"chunked")], bad)
        answers = 0
    if draw(st.integers(0, 4)) == 0 and answers == 1:  # pipelined behind a plain GET of the fixture object
        first = request(b"GET", f"/{BUCKET}/{OBJECT}".encode(), [])
        data, answers = first + data, 2
    label = f"S3 {framing} {data[:300]!r}"
    return Probe(label, data, answers, "s3", head=method == b"HEAD" and answers == 1)


# ---------------------------------------------------------------------------------------------------
# SigV4: requests signed properly, then broken in the signature


_SERVICES = {  # family → (signing name, method, path, extra headers, body)
    "json": ("sagemaker", "POST", "/", {"X-Amz-Target": "SageMaker.ListEndpoints"}, b"{}"),
    "runtime": (
        "sagemaker",
        "POST",
        "/endpoints/fz-none/invocations",
        {"Content-Type": "application/json"},
        b"{}",
    ),
    "query": (
        "sts",
        "POST",
        "/",
        {"Content-Type": "application/x-www-form-urlencoded"},
        b"Action=GetCallerIdentity&Version=2011-06-15",
    ),
    "s3": ("s3", "GET", f"/{BUCKET}/{OBJECT}", {}, b""),
}


def signed(family: str, port: int, presign: bool = False) -> tuple[str, dict[str, str], bytes]:
    """A request of `family` properly signed with the fuzz key: (target, headers, body)."""
    service, method, path, extra, body = _SERVICES[family]
    credentials = Credentials(KEY_ID, SECRET)
    url = f"http://127.0.0.1:{port}{path}"
    aws = AWSRequest(method=method, url=url, headers=dict(extra), data=body)
    if family == "s3":
        aws.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    if presign:
        from botocore.auth import S3SigV4QueryAuth, SigV4QueryAuth

        query_auth = S3SigV4QueryAuth if family == "s3" else SigV4QueryAuth
        query_auth(credentials, service, REGION, expires=60).add_auth(aws)
    else:
        auth = S3SigV4Auth if family == "s3" else SigV4Auth
        auth(credentials, service, REGION).add_auth(aws)
    prepared = aws.prepare()
    target = prepared.url.split(str(port), 1)[1]
    return target, {"Host": f"127.0.0.1:{port}", **dict(prepared.headers.items())}, body


_JUNK_AUTH = st.one_of(
    _bytes_text(80),
    st.sampled_from(
        [
            b"AWS4-HMAC-SHA256",
            b"AWS4-HMAC-SHA256 ",
            b"AWS4-HMAC-SHA256 Credential=",
            b"AWS4-HMAC-SHA256 Credential=,SignedHeaders=,Signature=",
            b"AWS AKIAFUZZEXAMPLE00001:c2lnbmF0dXJl",
            b"AWS4-ECDSA-P256-SHA256 Credential=x",
            b"Bearer x",
            b"AWS4-HMAC-SHA256 Credential=AKIAFUZZEXAMPLE00001/20260101/us-west-2/s3/aws4_request, "
            b"SignedHeaders=host, Signature=zz",
        ]
    ),
)
_SCOPES = st.sampled_from(
    [
        "{key}/{date}/{region}/{service}",
        "{key}/{date}/{region}/{service}/aws4_request/extra",
        "{key}//{region}/{service}/aws4_request",
        "{key}/{date}/{region}//aws4_request",
        "{key}/{date}/{region}/{service}/aws5_request",
        "{key}/20000230/{region}/{service}/aws4_request",
        "{key}/{date}/{region}/ec2/aws4_request",
        "{key}/{date}/\u00e9/{service}/aws4_request",
        "/{date}/{region}/{service}/aws4_request",
        "{key}%2F{date}%2F{region}%2F{service}%2Faws4_request",
        "{key}/{date}/{region}/{service}/aws4_request",
    ]
)


@st.composite
def sigv4_probes(draw: st.DrawFn, port: int) -> Probe:
    family = draw(st.sampled_from(["json", "runtime", "query", "s3"]))
    # presigned URLs are S3's (botocore's query signer wants no body to move into the query)
    presign = draw(st.booleans()) if family == "s3" else False
    target, headers, body = signed(family, port, presign=presign)
    service = _SERVICES[family][0]
    method = _SERVICES[family][1]
    date = headers.get("X-Amz-Date", "20260101T000000Z")
    mutation = draw(
        st.sampled_from(
            ["junk-auth", "scope", "no-date", "bad-date", "signature", "signed-headers", "both", "query-junk"]
        )
    )
    if presign and mutation in ("junk-auth", "no-date", "bad-date", "signed-headers"):
        mutation = "query-junk"
    if mutation == "junk-auth":
        headers["Authorization"] = _header_safe(draw(_JUNK_AUTH)).decode("latin-1")
    elif mutation == "scope":
        scope = draw(_SCOPES).format(key=KEY_ID, date=date[:8], region=REGION, service=service)
        if presign:
            path, _, query = target.partition("?")
            pairs = [p for p in query.split("&") if not p.startswith("X-Amz-Credential=")]
            target = f"{path}?{'&'.join([*pairs, 'X-Amz-Credential=' + quote(scope, safe='%')])}"
        else:
            head, _, rest = headers["Authorization"].partition("Credential=")
            headers["Authorization"] = f"{head}Credential={scope},{rest.partition(',')[2]}"
    elif mutation == "no-date":
        headers.pop("X-Amz-Date", None)
        if draw(st.booleans()):
            headers["Date"] = draw(
                st.sampled_from(["Thu, 01 Jan 2026 00:00:00 GMT", "yesterday", "", "Mon, 99 Foo"])
            )
    elif mutation == "bad-date":
        headers["X-Amz-Date"] = draw(
            st.sampled_from(
                ["20261301T000000Z", "20260101T250000Z", "2026-01-01T00:00:00Z", "", "x" * 30, date[:-1]]
            )
        )
    elif mutation == "signature":
        auth = headers.get("Authorization", "")
        if presign:
            path, _, query = target.partition("?")
            junk = draw(st.sampled_from(["", "zz", "0" * 64, "%ff", "0" * 10000]))
            pairs = [p for p in query.split("&") if not p.startswith("X-Amz-Signature=")]
            target = f"{path}?{'&'.join([*pairs, 'X-Amz-Signature=' + junk])}"
        else:
            headers["Authorization"] = auth[: auth.rindex("=") + 1] + draw(
                st.sampled_from(["", "0" * 64, "0" * 63 + "g", "A" * 64])
            )
    elif mutation == "signed-headers":
        auth = headers["Authorization"]
        new = draw(st.sampled_from(["", "x-amz-date", "host;host", "HOST;x-amz-date", "host;x-nope", ";;;"]))
        head, _, rest = auth.partition("SignedHeaders=")
        headers["Authorization"] = f"{head}SignedHeaders={new},{rest.partition(',')[2]}"
    elif mutation == "both":  # header and query authentication at once
        if presign:
            headers["Authorization"] = (
                "AWS4-HMAC-SHA256 Credential=x, SignedHeaders=host, Signature=" + "0" * 64
            )
        else:
            target += ("&" if "?" in target else "?") + "X-Amz-Signature=" + "0" * 64
    else:  # junk among the presigned parameters (or a presigned query added to a header-signed one)
        name = draw(
            st.sampled_from(
                ["X-Amz-Expires", "X-Amz-Date", "X-Amz-Algorithm", "X-Amz-SignedHeaders", "X-Amz-Credential"]
            )
        )
        value = draw(
            st.one_of(
                st.sampled_from(
                    ["", "-1", "0", "604801", "99999999999999999999", "1e3", "%", "%zz", "AWS4-HMAC-SHA1"]
                ),
                _text(20).map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="%")),
            )
        )
        path, _, query = target.partition("?")
        pairs = [p for p in query.split("&") if p and not p.startswith(name + "=")]
        if draw(st.booleans()):
            pairs.append(f"{name}={value}")
        else:  # repeated: the original stays, a second copy follows
            pairs = [*query.split("&"), f"{name}={value}"] if query else [f"{name}={value}"]
        target = f"{path}?{'&'.join(pairs)}"
        if not presign:
            headers.pop("Authorization", None)
    raw_headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    data = request(method.encode(), target.encode("latin-1"), raw_headers, body)
    return Probe(f"SigV4 {family} {mutation} presigned={presign}", data, 1, family, forged=True)
