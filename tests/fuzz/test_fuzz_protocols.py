"""Property-based fuzzing of the protocols on the port besides SageMaker's: STS (awsQuery), the S3 edge
(streamed to the embedded store) and SigV4 verification (`--credentials`). Two servers with the
embedded S3 store: one open (S3 and STS requests reach their handlers), one with keys (every request
is verified first). For every input:

- no 500 from Moorage itself; a 5xx is allowed only as 501 NotImplemented, 503 ServiceUnavailable (the
  store dropped the request unanswered), or passed through from the
  store as the store's own XML error;
- an answer to every complete request within a bound, and once the client half-closes, an answer or
  a close within a bound (a request cut short, or waiting for a body after 100-continue, must not
  pin the connection);
- no Python traceback or exception text in a body, and nothing Python in the server's log;
- errors in the protocol of the API the request was for, as botocore's own parser reads them (awsJson,
  restJson, awsQuery, S3 XML); on the server with keys, a forged signature is never let through;
- the server stays alive, and a well-behaved boto3 client (SageMaker, STS and S3 calls from its own
  process) keeps being answered promptly throughout.

MOORAGE_FUZZ_EXAMPLES and MOORAGE_FUZZ_RANDOM work as in test_fuzz_port.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.parsers import create_parser
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import TIMEOUT, fuzz
from tests.fuzz.conftest import ControlLoop, FuzzTarget, rss_kib, watch
from tests.fuzz.protocol_strategies import (
    ACCOUNT,
    BUCKET,
    KEY_ID,
    OBJECT,
    REGION,
    SECRET,
    Probe,
    s3_probes,
    sigv4_probes,
    sts_probes,
)
from tests.support.moorage_server import moorage_server

ANSWER_BOUND = 10.0  # s: a complete request is answered within this
CLOSE_BOUND = 5.0  # s: after the client half-closes, the rest of the answers or a close
LOOP_BOUND = 2.0  # s: the slowest the watcher's calls may be
RSS_GROWTH_BOUND_KIB = 150 * 1024
KEYS_FILE = f"""\
[fuzz]
aws_access_key_id = {KEY_ID}
aws_secret_access_key = {SECRET}
aws_account_id = {ACCOUNT}
"""
SERVER_ENV = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1"}

pytestmark = TIMEOUT


class ProtocolFailure(AssertionError):
    pass


class NoAnswer(ProtocolFailure):
    """No answer to a complete request, or no answer nor close after the client half-closed."""


class GarbledAnswer(ProtocolFailure):
    """Bytes that are not an HTTP answer."""


class ServerError(ProtocolFailure):
    """A 5xx from Moorage itself (other than 501), or a 5xx from the store that is not its XML."""


class TracebackLeak(ProtocolFailure):
    """Python traceback or exception text in a body."""


class BadErrorShape(ProtocolFailure):
    """An error botocore cannot read in the protocol of the API the request was for."""


class NotRefused(ProtocolFailure):
    """A forged signature that got through."""


class ServerDied(ProtocolFailure):
    """The server process exited."""


# ---------------------------------------------------------------------------------------------------
# The servers and the watcher


def _watch(url: str, stop: Any, results: Any) -> None:
    """The watcher: SageMaker, STS and S3 calls in turn, until `stop` is set."""
    config = Config(
        retries={"max_attempts": 1, "mode": "standard"},
        read_timeout=10,
        connect_timeout=5,
        s3={"addressing_style": "path"},
    )
    session = boto3.session.Session(
        aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name=REGION
    )
    sm, sts, s3 = (
        session.client(name, endpoint_url=url, config=config) for name in ("sagemaker", "sts", "s3")
    )
    calls: list[Callable[[], Any]] = [
        lambda: sm.list_endpoints(MaxResults=10),
        lambda: sts.get_caller_identity(),
        lambda: s3.get_object(Bucket=BUCKET, Key=OBJECT)["Body"].read(),
    ]
    watch(calls, stop, results)


class Watcher(ControlLoop):
    """ControlLoop's process and record, making `_watch`'s calls instead of ListEndpoints alone."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._process = type(self._process)(
            target=_watch, args=(url, self._stop, self._results), name="fuzz-protocol-watcher", daemon=True
        )


@contextlib.contextmanager
def _server(root: Path, signed: bool) -> Iterator[FuzzTarget]:
    args: tuple[str, ...] = ()
    if signed:
        keys = root / "keys"
        keys.write_text(KEYS_FILE)
        keys.chmod(0o600)
        args = ("--credentials", str(keys))
    with moorage_server(root / "state", env=SERVER_ENV, args=args) as server:
        s3 = boto3.session.Session().client(
            "s3",
            endpoint_url=server.url,
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        s3.put_object(Bucket=BUCKET, Key=OBJECT, Body=b"fuzz object")
        port = int(server.url.rsplit(":", 1)[1])
        loop = Watcher(server.url)
        loop.start()
        try:
            yield FuzzTarget(server, port, rss_kib(server.process.pid), loop, time.monotonic(), frozenset())
        finally:
            loop.stop()


@pytest.fixture(scope="module")
def open_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """The default server (embedded S3 store, no keys): requests reach the STS and S3 handlers."""
    with _server(tmp_path_factory.mktemp("fuzz-open"), signed=False) as target:
        yield target


@pytest.fixture(scope="module")
def signed_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    """The same with `--credentials`: every request is verified before anything else."""
    with _server(tmp_path_factory.mktemp("fuzz-signed"), signed=True) as target:
        yield target


@pytest.fixture(autouse=True)
def _mark_test_start() -> None:
    """Replaces conftest's (which would start the SageMaker fuzzing server, not needed here)."""


# ---------------------------------------------------------------------------------------------------
# A raw client that reads what comes back: Content-Length, chunked, or up to the close


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, head: bytes) -> None:
        self.status, self.headers, self.body, self.head = status, headers, body, head

    def describe(self) -> str:
        return f"{self.head.decode('latin-1')}\r\n\r\n{self.body[:800]!r}"

    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


class Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False

    def _fill(self, deadline: float) -> bool:
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _until(self, marker: bytes, deadline: float) -> int:
        while (at := self.buffer.find(marker)) < 0:
            if not self._fill(deadline):
                return -1
        return at

    def _take(self, count: int, deadline: float) -> bytes:
        while len(self.buffer) < count:
            if not self._fill(deadline):
                raise GarbledAnswer(f"the connection closed inside a body: {bytes(self.buffer[:300])!r}")
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def read(self, bound: float, head_only: bool) -> Answer | None:
        """The next final answer, or None if the connection closed cleanly first; TimeoutError if nothing
        complete came within `bound`."""
        deadline = time.monotonic() + bound
        while True:
            end = self._until(b"\r\n\r\n", deadline)
            if end < 0:
                if self.buffer:
                    raise GarbledAnswer(
                        f"the connection closed inside an answer head: {bytes(self.buffer)!r}"
                    )
                return None
            head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            status_line, *lines = head.split(b"\r\n")
            match = re.fullmatch(rb"HTTP/1\.[01] (\d{3})(?: .*)?", status_line)
            if match is None:
                raise GarbledAnswer(f"not an HTTP answer: {head[:300]!r}")
            headers: dict[str, str] = {}
            for line in lines:
                name, colon, value = line.partition(b":")
                if not colon:
                    raise GarbledAnswer(f"a header line without a colon: {line!r}")
                headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
            status = int(match.group(1))
            if status >= 200:
                break
        if head_only or status in (204, 304):
            body = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while True:
                end = self._until(b"\r\n", deadline)
                if end < 0:
                    raise GarbledAnswer("the connection closed inside a chunked body")
                size = int(bytes(self.buffer[:end]).split(b";")[0], 16)
                del self.buffer[: end + 2]
                parts.append(self._take(size, deadline))
                self._take(2, deadline)
                if size == 0:
                    break
            body = b"".join(parts)
        elif "content-length" in headers:
            body = self._take(int(headers["content-length"]), deadline)
        else:
            while self._fill(deadline):
                pass
            body, self.buffer = bytes(self.buffer), bytearray()
        return Answer(status, headers, body, head)


# ---------------------------------------------------------------------------------------------------
# The checks

_TRACEBACK = re.compile(r'Traceback \(most recent call last\)|File "[^"\n]*", line \d+')
_EXCEPTION_LINE = re.compile(r"(?m)^\s*(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt): ")
_PROTOCOLS = {"json": "json", "runtime": "rest-json", "query": "query", "s3": "rest-xml"}
_SHAPES = {
    "json": boto3.session.Session().client("sagemaker", region_name=REGION).meta.service_model,
    "runtime": boto3.session.Session().client("sagemaker-runtime", region_name=REGION).meta.service_model,
    "query": boto3.session.Session().client("sts", region_name=REGION).meta.service_model,
    "s3": boto3.session.Session().client("s3", region_name=REGION).meta.service_model,
}
_OPERATIONS = {
    "json": "ListEndpoints",
    "runtime": "InvokeEndpoint",
    "query": "GetCallerIdentity",
    "s3": "GetObject",
}


_HTTP_REFUSALS = frozenset({400, 408, 413, 414, 431})


def from_store(answer: Answer) -> bool:
    """An answer the embedded store wrote (SeaweedFS names itself; Moorage's own answers do not)."""
    return "seaweedfs" in answer.headers.get("server", "").lower()


def _error_code(answer: Answer, family: str) -> str:
    model = _SHAPES[family]
    shape = model.operation_model(_OPERATIONS[family]).output_shape
    response = {"status_code": answer.status, "headers": answer.headers, "body": answer.body}
    try:
        parsed = create_parser(_PROTOCOLS[family]).parse(response, shape)
    except Exception as exc:
        raise BadErrorShape(
            f"botocore's {_PROTOCOLS[family]} parser failed: {type(exc).__name__}: {exc}"
        ) from None
    code = str(parsed.get("Error", {}).get("Code", ""))
    if not code or code == str(answer.status):
        raise BadErrorShape(f"no error code botocore can read (it read {parsed.get('Error')})")
    return code


def check_answer(probe: Probe, answer: Answer, sent: bytes) -> None:
    store = from_store(answer)
    status = answer.status
    # 503 ServiceUnavailable is this hop's retryable answer when the store drops a request it did not
    # like without answering (a body it stopped reading): S3's own word for "try again", not a crash
    dropped = status == 503 and b"<Code>ServiceUnavailable</Code>" in answer.body
    if status >= 500 and status != 501 and not dropped:
        if not store:
            raise ServerError(f"status {status} from Moorage")
        if not answer.body.lstrip().startswith(b"<?xml") and b"<Error>" not in answer.body:
            raise ServerError(f"status {status} from the store without its XML error")
    texts = [answer.body.decode("utf-8", "replace")]
    with contextlib.suppress(ValueError, RecursionError):
        texts.append(json.dumps(json.loads(answer.body)))
    patterns = [_TRACEBACK] + ([_EXCEPTION_LINE] if status >= 400 and not store else [])
    for text in texts:
        for pattern in patterns:
            for found in pattern.findall(text):
                if found.strip().encode() not in sent:
                    raise TracebackLeak(f"Python traceback or exception text in the body: {found!r}")
    if probe.forged and status < 400:
        raise NotRefused(f"status {status} for a request whose signature is forged")
    family = probe.family
    if status >= 400 and not probe.head and not (family == "s3" and status == 404 and not answer.body):
        if family in ("json", "runtime") and "/endpoints/" not in sent.split(b"\r\n", 1)[0].decode("latin-1"):
            family = "json"
        if family == "query" and not probe.forged:  # without an Action, a request for / is not STS's
            if answer.body.startswith(b"{"):
                family = "json"
            elif b"<ErrorResponse>" not in answer.body:
                family = "s3"
        if (
            family == "s3"
            and status == 400
            and (not answer.body or answer.body.startswith(b"400 Bad Request"))
        ):
            return  # the store's HTTP layer (Go's net/http) refusing bytes it cannot parse, passed through
        if family in ("s3", "query") and status in _HTTP_REFUSALS and answer.body.startswith(b"{"):
            # refused by the HTTP server before the head said which API it was for: Moorage's awsJson
            family = "json"
        _error_code(answer, family)


def converse(target: FuzzTarget, probe: Probe) -> list[Answer]:
    """Send the probe on a fresh connection; read each answer owed, then half-close and read until close."""
    target.sent(probe.label)
    sock = socket.create_connection(("127.0.0.1", target.port), timeout=ANSWER_BOUND)
    reader = Reader(sock)
    answers: list[Answer] = []
    answer: Answer | None = None
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # refused early: read what it said
            sock.sendall(probe.data)
        for index in range(probe.answers):
            try:
                answer = reader.read(ANSWER_BOUND, head_only=probe.head and index == probe.answers - 1)
            except TimeoutError:
                raise NoAnswer(f"no answer to request {index + 1} within {ANSWER_BOUND} s") from None
            if answer is None:
                if answers and answers[-1].closes():
                    break
                raise NoAnswer(f"the connection closed without an answer to request {index + 1}")
            check_answer(probe, answer, probe.data)
            answers.append(answer)
            if answer.closes():
                break
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        if probe.head and answers and answers[-1].closes():
            # a HEAD refused by the HTTP parser before it knew the method carries a body: reported,
            # harmless since the connection closes after it
            reader.buffer.clear()
            with contextlib.suppress(TimeoutError):
                while reader._fill(time.monotonic() + CLOSE_BOUND):
                    reader.buffer.clear()
            return answers
        while True:
            try:
                answer = reader.read(CLOSE_BOUND, head_only=False)
            except TimeoutError:
                raise NoAnswer(
                    f"neither an answer nor a close within {CLOSE_BOUND} s of the half-close"
                ) from None
            if answer is None:
                break
            check_answer(probe, answer, probe.data)
            answers.append(answer)
    except ProtocolFailure as failure:
        message = f"{failure}\n--- {probe.label}: sent ---\n{probe.data[:1500]!r}\n--- answers ---\n"
        message += "\n".join(a.describe() for a in answers) or "(none)"
        if answer is not None and answer not in answers:
            message += f"\n--- the answer that failed ---\n{answer.describe()}"
        if not target.alive():
            message += f"\n--- the server died; its log ends ---\n{target.log_tail()}"
        elif isinstance(failure, ServerError):
            message += f"\n--- the server's log ends ---\n{target.log_tail(2500)}"
        raise type(failure)(message) from None
    finally:
        sock.close()
    return answers


def still_alive(target: FuzzTarget, what: object) -> None:
    if not target.alive():
        raise ServerDied(f"the server exited after {what!r}; its log ends:\n{target.log_tail()}")


# ---------------------------------------------------------------------------------------------------
# The properties


@fuzz(60)
@given(probe=sts_probes())
def test_sts_query_bodies(open_target: FuzzTarget, probe: Probe) -> None:
    """awsQuery forms: random actions, versions and parameters, bad form encoding, huge values."""
    for answer in converse(open_target, probe):
        if answer.status == 200 and not probe.head and b"<GetCallerIdentityResponse" in answer.body:
            shape = _SHAPES["query"].operation_model("GetCallerIdentity").output_shape
            response = {"status_code": 200, "headers": answer.headers, "body": answer.body}
            assert create_parser("query").parse(response, shape)["Account"]
    still_alive(open_target, probe)


@fuzz(80)
@given(probe=s3_probes())
def test_s3_edge_raw(open_target: FuzzTarget, probe: Probe) -> None:
    """Methods, odd paths and queries, SSE/KMS and owner headers, framing mismatches, 100-continue
    without a body, bodies cut short, pipelines: all on the S3 pass-through."""
    converse(open_target, probe)
    still_alive(open_target, probe)


_KEYS = st.one_of(
    st.text(min_size=1, max_size=40).filter(lambda k: "\x00" not in k),
    st.sampled_from(
        ["a/../b", "../x", "./", "%41", "k?x=1", "k#f", " lead", "trail ", "\u00e9\U0001f600", "a//b"]
    ),
)


@fuzz(25)
@given(
    key=_KEYS,
    body=st.binary(max_size=256),
    kms=st.sampled_from([None, "aws:kms", "AES256"]),
    kms_key=st.one_of(st.none(), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)),
    owner=st.sampled_from([None, "123456789012", "999988887777"]),
    metadata=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
        max_size=3,
    ),
)
def test_s3_through_boto3(
    open_target: FuzzTarget,
    key: str,
    body: bytes,
    kms: str | None,
    kms_key: str | None,
    owner: str | None,
    metadata: dict[str, str],
) -> None:
    """Shapes boto3 builds: put, head, get, list, copy and delete of odd keys with SSE/KMS, bucket owner
    and metadata parameters. Whatever S3 would refuse may be refused, but nothing is a 5xx and what
    is stored reads back."""
    s3 = boto3.session.Session().client(
        "s3",
        endpoint_url=open_target.server.url,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}, read_timeout=ANSWER_BOUND
        ),
    )
    extra: dict[str, Any] = {}
    if kms is not None:
        extra["ServerSideEncryption"] = kms
        if kms == "aws:kms" and kms_key:
            extra["SSEKMSKeyId"] = kms_key
    owned = {"ExpectedBucketOwner": owner} if owner else {}
    open_target.sent(f"boto3 S3 {key!r} {extra} {owned}")
    try:
        s3.put_object(Bucket=BUCKET, Key=key, Body=body, Metadata=metadata, **extra, **owned)
        s3.head_object(Bucket=BUCKET, Key=key, **owned)
        assert s3.get_object(Bucket=BUCKET, Key=key, **owned)["Body"].read() == body
        s3.list_objects_v2(Bucket=BUCKET, Prefix=key[:5], **owned)
        s3.copy_object(Bucket=BUCKET, Key=key + ".copy", CopySource={"Bucket": BUCKET, "Key": key}, **owned)
        s3.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": key}, {"Key": key + ".copy"}]}, **owned)
    except ClientError as exc:
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        code = exc.response["Error"]["Code"]
        assert status < 500 or status == 501, f"{code} {status}: {exc}"
        if owner == "999988887777" and status != 400:  # a header the HTTP layer refuses comes first
            assert code == "AccessDenied"
    else:
        assert owner != "999988887777", "a request for another account's bucket went through"
    still_alive(open_target, key)


@fuzz(80)
@given(data=st.data())
def test_sigv4_headers_and_presigned_queries(signed_target: FuzzTarget, data: st.DataObject) -> None:
    """Requests signed with a good key, then broken: junk Authorization headers, bad credential scopes,
    missing or bad dates, signatures and signed headers, junk presigned parameters, both auth forms at
    once. Each is refused in its API's protocol."""
    probe = data.draw(sigv4_probes(signed_target.port), label="probe")
    converse(signed_target, probe)
    still_alive(signed_target, probe)


def _healthy(target: FuzzTarget) -> None:
    still_alive(target, "the whole run")
    time.sleep(LOOP_BOUND)
    loop = target.loop
    loop.stop()
    assert loop.durations, "the watcher made no calls"
    assert not loop.failures, f"the watcher's calls failed {len(loop.failures)} times: {loop.failures[:5]}"
    slowest, when = loop.slowest
    around = "\n".join(target.sent_around(when)[-40:])
    assert slowest < LOOP_BOUND, f"a watcher call took {slowest:.2f} s; requests sent around it:\n{around}"
    log = target.server.output()
    assert "Traceback" not in log, (
        f"a traceback in the server's log:\n{log[log.index('Traceback') - 200 :][:4000]}"
    )
    growth = rss_kib(target.server.process.pid) - target.rss_after_warmup_kib
    assert growth < RSS_GROWTH_BOUND_KIB, f"the server's RSS grew by {growth / 1024:.0f} MiB"
    print(f"watcher: {len(loop.durations)} calls, slowest {slowest:.3f} s; RSS growth {growth} KiB")


def test_open_server_stayed_healthy(open_target: FuzzTarget) -> None:
    _healthy(open_target)


def test_signed_server_stayed_healthy(signed_target: FuzzTarget) -> None:
    _healthy(signed_target)
