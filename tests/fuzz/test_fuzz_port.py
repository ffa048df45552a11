"""Property-based fuzzing of the server's one HTTP port: control plane, runtime, other methods and paths,
and raw HTTP framing, all against one real `moorage serve` process.

Inputs come from botocore's own service models and are then broken on purpose (see strategies.py). For
every request the server must:

- answer within a bound (a frozen server fails here, not in a CI timeout);
- never answer 5xx, except 501 NotImplemented for a modelled operation it does not serve; 500 never;
- never show a Python traceback or exception line in a body;
- shape every control-plane error (POST /) as awsJson1_1 and every runtime error (/endpoints/...) as
  restJson1, so botocore reads the error code; a successful control answer is strict JSON botocore parses;
- refuse a request that repeats a single-valued header with a different value, answer pipelined
  requests in order, and leave the connection in step (a HEAD answer has no body);
- stay alive, and keep answering a well-behaved boto3 client (a watcher makes ListEndpoints calls in
  the background throughout, from its own process) within a generous bound, with bounded memory growth.

The run is bounded: the default settings take about a minute on two cores, with a fixed seed
(`derandomize`), so CI sees the same examples every time. For a longer hunt:

    MOORAGE_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/fuzz -p no:cacheprovider

runs that many examples per test, and MOORAGE_FUZZ_RANDOM=1 draws new examples each run instead of the
fixed ones; add --hypothesis-seed=N to repeat such a run. Every failure message carries the request as
sent and the answer as received.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from dataclasses import dataclass, replace
from typing import Any

import pytest
from botocore.awsrequest import HeadersDict
from botocore.parsers import create_parser
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import TIMEOUT, fuzz
from tests.fuzz.conftest import FuzzTarget, rss_kib, watcher_client
from tests.fuzz.strategies import (
    ECHO,
    IMPLEMENTED,
    OTHER_OPERATIONS,
    RUNTIME,
    SAGEMAKER,
    Exchange,
    Expect,
    HttpRequest,
    Step,
    conflicting_repeats,
    control_requests,
    framing_exchanges,
    other_requests,
    runtime_requests,
    short,
)

ANSWER_BOUND = 10.0  # s: every request that can be answered must be, within this
FRAMING_BOUND = 5.0  # s: refusals of malformed bytes come from the parser, with no I/O behind them
SILENCE = 0.25  # s to wait for an answer that may rightly never come (a truncated request)
LOOP_BOUND = 2.0  # s: the slowest the watcher's ListEndpoints may be while the fuzzer runs
RSS_GROWTH_BOUND_KIB = 150 * 1024


pytestmark = TIMEOUT


# ---------------------------------------------------------------------------------------------------
# What can go wrong, one exception class each: hypothesis reports distinct classes as distinct bugs.


class PortFailure(AssertionError):
    pass


class NoAnswer(PortFailure):
    """No answer within the bound, or the connection closed without one."""


class GarbledAnswer(PortFailure):
    """Bytes that are not an HTTP answer: a body on a HEAD answer, a wrong Content-Length, ..."""


class ServerError(PortFailure):
    """A 5xx other than 501 NotImplemented."""


class TracebackLeak(PortFailure):
    """Python traceback or exception text in a body."""


class BadErrorShape(PortFailure):
    """An error botocore cannot read as its protocol's error (no code, no message, not JSON)."""


class BadSuccess(PortFailure):
    """A 2xx control-plane answer that is not strict JSON of the output shape."""


class NotRefused(PortFailure):
    """A request the server must refuse (a single-valued header repeated) got a 2xx."""


class WrongAnswer(PortFailure):
    """An answer to another request than the one asked (pipelining out of order), or the wrong status."""


class ServerDied(PortFailure):
    """The server process exited."""


# ---------------------------------------------------------------------------------------------------
# A raw HTTP/1.1 client: bytes as they are, answers as they come


@dataclass
class Answer:
    status: int
    headers: HeadersDict
    body: bytes
    raw_head: bytes

    def describe(self) -> str:
        return f"{self.raw_head.decode('latin-1')}\r\n\r\n{short(self.body, 800)}"

    def closes(self) -> bool:
        return "close" in self.headers.get("connection", "").lower()


class Silence(Exception):
    def __init__(self, partial: bytes) -> None:
        super().__init__(partial)
        self.partial = partial


class Connection:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_BOUND)
        self.buffer = bytearray()
        self.eof = False

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        """False if the server has already closed the connection."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def _fill(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Silence(bytes(self.buffer))
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise Silence(bytes(self.buffer)) from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def read(self, bound: float, *, head_only: bool = False, interim: bool = False) -> Answer | None:
        """The next answer (1xx skipped unless `interim`); None if the connection closed cleanly first.
        Raises Silence if nothing complete came within `bound`, GarbledAnswer for bytes that are not HTTP."""
        deadline = time.monotonic() + bound
        while True:
            while (end := self.buffer.find(b"\r\n\r\n")) < 0:
                if not self._fill(deadline):
                    if self.buffer:
                        raise GarbledAnswer(
                            f"connection closed inside an answer head: {short(bytes(self.buffer))}"
                        )
                    return None
            head = bytes(self.buffer[:end])
            status_line, *lines = head.split(b"\r\n")
            match = re.fullmatch(rb"HTTP/1\.[01] (\d{3})(?: .*)?", status_line)
            if match is None:
                raise GarbledAnswer(
                    "bytes after the previous answer that are not an HTTP answer (a body on a HEAD answer, "
                    f"or a wrong Content-Length?): {short(bytes(self.buffer), 300)}"
                )
            headers = HeadersDict()
            for line in lines:
                name, colon, value = line.partition(b":")
                if not colon:
                    raise GarbledAnswer(f"header line without a colon: {line!r}")
                headers[name.strip().decode("latin-1")] = value.strip().decode("latin-1")
            del self.buffer[: end + 4]
            status = int(match.group(1))
            if 100 <= status < 200:
                if interim:
                    return Answer(status, headers, b"", head)
                continue
            break
        if head_only or status in (204, 304):
            length = 0
        elif "content-length" in headers:
            length = int(headers["content-length"])
        else:
            raise GarbledAnswer(f"an answer without Content-Length: {head!r}")
        while len(self.buffer) < length:
            if not self._fill(deadline):
                raise GarbledAnswer(f"connection closed inside a body: {head!r} {short(bytes(self.buffer))}")
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return Answer(status, headers, body, head)


# ---------------------------------------------------------------------------------------------------
# The checks


_TRACEBACK = re.compile(r'Traceback \(most recent call last\)|File "[^"\n]*", line \d+')
_EXCEPTION_LINE = re.compile(r"(?m)^\s*(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt): ")
_INVOKE = RUNTIME.operation_model("InvokeEndpoint")


def _strict_json(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


def _strings(value: Any) -> list[str]:
    """Every string in a decoded JSON value (messages are where exception text would hide)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def _leak(sent: bytes, answer: Answer) -> str | None:
    """Traceback text in the body, raw or inside JSON strings, or an exception line in an error message;
    text the request itself carried (the echo model answers with its input) does not count."""
    texts = [answer.body.decode("utf-8", "replace")]
    with contextlib.suppress(ValueError, RecursionError):
        texts += _strings(json.loads(answer.body))
    patterns = [_TRACEBACK] + ([_EXCEPTION_LINE] if answer.status >= 400 else [])
    for text in texts:
        for pattern in patterns:
            for found in pattern.findall(text):
                found = found.strip()
                if found.encode() not in sent and json.dumps(found)[1:-1].encode() not in sent:
                    return found
    return None


def _plane(expect: Expect | None) -> str:
    if expect is None:
        return "any"
    path = expect.target.split(b"?", 1)[0]
    if path.startswith(b"/endpoints/"):
        return "runtime"
    if path == b"/" and expect.method == b"POST":
        return "control"
    return "other"


def _error_body(answer: Answer) -> dict[str, Any]:
    try:
        body = _strict_json(answer.body)
    except ValueError as exc:
        raise BadErrorShape(f"error body is not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise BadErrorShape("error body is not a JSON object")
    message = body.get("message", body.get("Message"))
    if not isinstance(message, str):
        raise BadErrorShape("error body has no string message/Message")
    return body


def _botocore_error(answer: Answer, protocol: str, shape: Any) -> dict[str, Any]:
    response = {"status_code": answer.status, "headers": answer.headers, "body": answer.body}
    try:
        parsed: dict[str, Any] = create_parser(protocol).parse(response, shape)
    except Exception as exc:
        raise BadErrorShape(f"botocore's {protocol} parser failed: {type(exc).__name__}: {exc}") from None
    return parsed["Error"]


def check_answer(sent: bytes, expect: Expect | None, answer: Answer) -> None:
    """Every invariant one answer must keep; raises a PortFailure subclass."""
    status = answer.status
    if status >= 500 and status != 501:
        raise ServerError(f"status {status}")
    leak = _leak(sent, answer)
    if leak is not None:
        raise TracebackLeak(f"Python traceback or exception text in the body: {leak!r}")
    plane = _plane(expect)
    if expect is not None and expect.method == b"HEAD":
        return  # no body to check (that there is none is the reader's business)
    if status >= 400 and answer.headers.get("content-type") == "application/xml":
        # any path but /, /ping, /metrics and /endpoints/ is S3's (turned off on this server): S3's XML
        if b"<Error><Code>" not in answer.body:
            raise BadErrorShape("an S3 error without <Error><Code>")
        if status == 501 and b"<Code>NotImplemented</Code>" not in answer.body:
            raise ServerError("501 from the S3 edge without NotImplemented")
    elif status >= 400:
        body = _error_body(answer)
        if plane == "control":
            operation = expect.operation if expect is not None else None
            shape = SAGEMAKER.operation_model(operation).output_shape if operation else None
            error = _botocore_error(answer, "json", shape)
            if not isinstance(body.get("__type"), str) or not error["Code"] or error["Code"] == str(status):
                raise BadErrorShape(f"awsJson1_1 error without a usable __type (botocore read {error})")
        elif plane == "runtime":
            error = _botocore_error(answer, "rest-json", _INVOKE.output_shape)
            code = error.get("Code", "")
            # a body over the limit gets AWS's own answer, {"message": ...} with no code
            if not code or (code == str(status) and status != 413):
                raise BadErrorShape(
                    f"restJson1 error without x-amzn-ErrorType or __type (botocore read {error})"
                )
        if status == 501 and body.get("__type") != "NotImplemented":
            raise ServerError(f"501 with code {body.get('__type')!r} instead of NotImplemented")
    if expect is None:
        return
    if expect.refuse and status < 400:
        raise NotRefused(f"status {status} for a request that repeats a single-valued header")
    if expect.marker is not None and expect.marker not in answer.body:
        raise WrongAnswer(f"the answer does not mention {expect.marker!r}: pipelined answers out of order?")
    if plane == "control" and status < 300 and expect.operation is not None:
        try:
            document = _strict_json(answer.body)
        except ValueError as exc:
            raise BadSuccess(f"the answer is not strict JSON ({exc})") from None
        if not isinstance(document, dict):
            raise BadSuccess("the answer is not a JSON object")
        output = SAGEMAKER.operation_model(expect.operation).output_shape
        try:
            create_parser("json").parse(
                {"status_code": status, "headers": answer.headers, "body": answer.body}, output
            )
        except Exception as exc:
            raise BadSuccess(f"botocore cannot parse it: {type(exc).__name__}: {exc}") from None


def _report(
    failure: PortFailure, target: FuzzTarget, exchange: Exchange, sent: bytes, answer: Answer | None
) -> PortFailure:
    """The same failure, with the request and the answer in its message."""
    message = f"{failure}\n--- {exchange.label}: sent ---\n{short(sent)}\n"
    message += f"--- answer ---\n{answer.describe() if answer is not None else '(none)'}"
    if not target.alive():
        message += f"\n--- the server died; its log ends ---\n{target.log_tail()}"
    elif isinstance(failure, ServerError):
        message += f"\n--- the server's log ends ---\n{target.log_tail(2500)}"
    return type(failure)(message)


def converse(target: FuzzTarget, exchange: Exchange, bound: float = FRAMING_BOUND) -> list[Answer]:
    """Run one exchange on a fresh connection, check every answer, then check the connection is in step."""
    target.sent(exchange.label)
    connection = Connection(target.port)
    sent = b""
    answers: list[Answer] = []
    answer: Answer | None = None
    try:
        for step in exchange.steps:
            if not connection.send(step.data) and not answers:
                raise NoAnswer("the server closed the connection before the request was sent")
            sent += step.data
            for expect in step.answers:
                answer = _read(connection, bound, expect.method == b"HEAD", expect.interim)
                if expect.interim and answer.status == 100:
                    continue
                check_answer(sent, replace(expect, interim=False), answer)
                answers.append(answer)
                if expect.interim:  # a final answer instead of 100 Continue: the body is not sent
                    return answers
        if exchange.tail != "none":
            try:
                answer = _read(connection, bound if exchange.tail == "must" else SILENCE, False, False)
            except NoAnswer:
                if exchange.tail == "must":
                    raise
                return answers  # still waiting for the rest of the request, as it should
            check_answer(sent, None, answer)
            answers.append(answer)
            if exchange.tail == "may":
                return answers
        if answers and not answers[-1].closes():
            _probe(connection, bound)
    except PortFailure as failure:
        raise _report(failure, target, exchange, sent, answer) from None
    finally:
        connection.close()
    return answers


def _read(connection: Connection, bound: float, head_only: bool, interim: bool) -> Answer:
    try:
        answer = connection.read(bound, head_only=head_only, interim=interim)
    except Silence as silence:
        if silence.partial:
            raise GarbledAnswer(
                f"an incomplete answer and then nothing for {bound} s: {short(silence.partial)}"
            ) from None
        raise NoAnswer(f"no answer within {bound} s") from None
    if answer is None:
        raise NoAnswer("the connection closed without an answer")
    return answer


def _probe(connection: Connection, bound: float) -> None:
    """The connection is kept open: a GET /ping on it must read a clean answer (nothing left over)."""
    if connection.eof or not connection.send(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"):
        return
    try:
        answer = connection.read(bound)
    except Silence as silence:
        raise NoAnswer(f"a GET /ping after the answer got nothing back: {short(silence.partial)}") from None
    if answer is not None and (answer.status != 200 or b"Healthy" not in answer.body):
        raise WrongAnswer(f"a GET /ping after the answer got: {answer.describe()}")


def send(target: FuzzTarget, request: HttpRequest) -> Answer:
    """One request on its own connection; its answer, checked."""
    refuse = bool(conflicting_repeats(request.headers))
    expect = Expect(request.method, request.target, request.operation, refuse=refuse)
    exchange = Exchange(request.note, (Step(request.wire(), (expect,)),))
    answers = converse(target, exchange, ANSWER_BOUND)
    return answers[0]


def still_alive(target: FuzzTarget, what: object) -> None:
    if not target.alive():
        raise ServerDied(f"the server exited after {what!r}; its log ends:\n{target.log_tail()}")


# ---------------------------------------------------------------------------------------------------
# The properties


@pytest.mark.parametrize("operation", IMPLEMENTED)
@fuzz(150)
@given(data=st.data())
def test_control_plane(target: FuzzTarget, operation: str, data: st.DataObject) -> None:
    """One test per operation: each gets its share of examples, and its own failure report."""
    request = data.draw(control_requests([operation]), label="request")
    send(target, request)
    still_alive(target, request)


@fuzz(100)
@given(request=control_requests(OTHER_OPERATIONS))
def test_other_sagemaker_operations(target: FuzzTarget, request: HttpRequest) -> None:
    """Every other operation in the model: the same invariants, and one the server said at set-up it does
    not serve answers 501 NotImplemented to any well-formed request, whatever its input."""
    answer = send(target, request)
    try:
        well_formed = isinstance(_strict_json(request.body), dict)
    except (ValueError, RecursionError):
        well_formed = False
    # the HTTP parser rightly refuses control characters in header values before any operation is looked up
    parsable = not any(re.search(rb"[\x00-\x08\x0a-\x1f\x7f]", value) for _, value in request.headers)
    clean = well_formed and parsable and not conflicting_repeats(request.headers)
    if request.operation in target.not_implemented and clean and answer.status != 501:
        raise WrongAnswer(f"{request!r} got {answer.describe()} instead of 501 NotImplemented")
    still_alive(target, request)


@fuzz(600)
@given(request=runtime_requests())
def test_runtime(target: FuzzTarget, request: HttpRequest) -> None:
    """InvokeEndpoint and its neighbours: the echo endpoint and missing ones, odd names, headers, bodies."""
    send(target, request)
    still_alive(target, request)


@fuzz(300)
@given(request=other_requests())
def test_other_methods_and_paths(target: FuzzTarget, request: HttpRequest) -> None:
    """Everything that is neither POST / nor /endpoints/...: it still gets a proper answer."""
    send(target, request)
    still_alive(target, request)


@fuzz(500)
@given(exchange=framing_exchanges())
def test_http_framing(target: FuzzTarget, exchange: Exchange) -> None:
    """Bytes no well-behaved client sends, pipelines, HEAD and Expect: answered, refused, or waited on."""
    converse(target, exchange)
    still_alive(target, exchange)


@fuzz(20)
@given(data=st.data())
def test_head_answers_have_no_body(target: FuzzTarget, data: st.DataObject) -> None:
    """Spelled out on its own as well: HEAD to each route, then GET on the same connection."""
    path = data.draw(
        st.sampled_from(
            (b"/", b"/ping", b"/endpoints/%s/invocations" % ECHO.encode(), b"/nope", b"/endpoints/x")
        )
    )
    head = b"HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n" % path
    get = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    steps = (Step(head, (Expect(b"HEAD", path),)), Step(get, (Expect(b"GET", b"/ping", marker=b"Healthy"),)))
    converse(target, Exchange(f"HEAD {path!r} then GET /ping", steps))


def test_server_stayed_healthy_throughout(target: FuzzTarget) -> None:
    """Last in the module (pytest keeps file order), after all the fuzzing: the well-behaved client was
    never refused or kept waiting, and memory growth is bounded."""
    still_alive(target, "the whole run")
    time.sleep(LOOP_BOUND)  # let the watcher make a few more calls after the last fuzzed request
    loop = target.loop
    loop.stop()
    assert loop.durations, "the ListEndpoints watcher made no calls"
    assert not loop.failures, (
        f"ListEndpoints failed {len(loop.failures)} times while fuzzing: {loop.failures[:5]}"
    )
    slowest, when = loop.slowest
    around = "\n".join(target.sent_around(when)[-40:])
    assert slowest < LOOP_BOUND, (
        f"a ListEndpoints call took {slowest:.2f} s ({when - target.started:.1f} s into the run; "
        f"{len(loop.durations)} calls): the event loop was blocked. Requests sent around it:\n{around}"
    )
    in_service = watcher_client(target.server.url).list_endpoints(StatusEquals="InService", MaxResults=100)
    names = [summary["EndpointName"] for summary in in_service["Endpoints"]]
    assert names == [ECHO], f"InService endpoints after the run: {names} (the fuzzer must deploy nothing)"
    growth = rss_kib(target.server.process.pid) - target.rss_after_warmup_kib
    assert growth < RSS_GROWTH_BOUND_KIB, f"the server's RSS grew by {growth / 1024:.0f} MiB during the run"
    calls = len(loop.durations)
    print(f"watcher: {calls} ListEndpoints calls, slowest {slowest:.3f} s; server RSS growth {growth} KiB")
