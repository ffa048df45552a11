"""What fuzzing the port found, each kept as a named regression test through real sockets and boto3."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import deploy, unique
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.raw_http import RawResponse, connect, exchange, read_response, read_rest

AMZ_JSON = b"application/x-amz-json-1.1"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model/x"
# generous: these calls take milliseconds; before the fix they waited 11.7 s behind a hostile body
NOT_FROZEN_SECONDS = 2.0


def _error(call: Callable[..., Any], **params: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(**params)
    error: dict[str, Any] = info.value.response["Error"]
    return error


def _control(target: str, body: bytes) -> bytes:
    return (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\n"
        b"X-Amz-Target: SageMaker.%s\r\nContent-Length: %d\r\n\r\n%s" % (target.encode(), len(body), body)
    )


def _assert_aws_error(reply: RawResponse, code: str) -> None:
    assert reply.headers[b"x-amzn-errortype"] == code.encode()
    assert reply.json()["__type"] == code


# 1. HEAD responses carried a body


def test_head_on_a_keep_alive_connection_has_no_body(server: RunningServer) -> None:
    with connect(server.url) as sock:
        sock.sendall(b"HEAD /ping HTTP/1.1\r\nHost: x\r\n\r\n" * 2 + b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        buffer = bytearray()
        heads = [read_response(sock, buffer, head_only=True) for _ in range(2)]
        got = read_response(sock, buffer)
        sock.sendall(b"HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        refused = read_response(sock, buffer, head_only=True)  # S3's, and S3 is off on this server
        again = read_response(sock, buffer)
    assert [(h.status, int(h.headers[b"content-length"])) for h in heads] == [(200, len(got.body))] * 2
    assert refused.status == 501 and int(refused.headers[b"content-length"]) > 0
    assert again.body == got.body == b'{"status": "Healthy"}'


# 2. a NextToken nested thousands deep was a 500 RecursionError


def test_nested_next_token_is_a_validation_exception(sm: Any) -> None:
    token = base64.urlsafe_b64encode(b"[" * 2000 + b"]" * 2000).decode()
    for call in (sm.list_models, sm.list_endpoints, sm.list_endpoint_configs):
        error = _error(call, NextToken=token)
        assert error["Code"] == "ValidationException" and "Invalid pagination token" in error["Message"]
    error = _error(sm.list_tags, ResourceArn=ARN, NextToken=token)
    assert error["Code"] == "ValidationException"


# 3. a lone surrogate reached SQLite: 500 UnicodeEncodeError


def test_lone_surrogate_is_refused_at_the_wire(sm: Any, server: RunningServer) -> None:
    error = _error(sm.list_tags, ResourceArn=ARN + "\ud800")  # botocore sends it as the escape \ud800
    assert error["Code"] == "SerializationException" and "not valid Unicode" in error["Message"]
    raw = exchange(server.url, _control("ListTags", b'{"ResourceArn": "' + ARN.encode() + b'\xed\xa0\x80"}'))
    assert raw.status == 400
    _assert_aws_error(raw, "SerializationException")


# 4. one 16 MiB body froze the port for 12 s


def _tags_body(size: int) -> bytes:
    """AddTags with ``"Tags": [{}, {}, ...]`` filling `size` bytes: cheap to send, costly to parse."""
    head, tail = b'{"ResourceArn": "' + ARN.encode() + b'", "Tags": [', b"{}]}"
    count = (size - len(head) - len(tail)) // 4
    return head + b"{}, " * count + tail


def _hostile(server: RunningServer, body: bytes, until: float, answers: list[RawResponse]) -> None:
    while time.monotonic() < until:
        with connect(server.url, timeout=30) as sock:
            sock.sendall(_control("AddTags", body))
            answers.append(read_response(sock, bytearray()))


def test_hostile_bodies_do_not_hold_up_other_clients(server: RunningServer, sm: Any, smr: Any) -> None:
    name = deploy(sm, _echo(server))
    huge, just_under = _tags_body(16 * 1024 * 1024), _tags_body(1024 * 1024 - 100)
    answers: dict[str, list[RawResponse]] = {"huge": [], "under": []}
    until = time.monotonic() + 4
    threads = [
        threading.Thread(target=_hostile, args=(server, huge, until, answers["huge"])),
        threading.Thread(target=_hostile, args=(server, just_under, until, answers["under"])),
    ]
    for thread in threads:
        thread.start()
    slowest = 0.0
    calls = 0
    while time.monotonic() < until:
        started = time.monotonic()
        sm.list_endpoints()
        smr.invoke_endpoint(EndpointName=name, ContentType="application/json", Body=b'{"x": 1}')
        slowest = max(slowest, time.monotonic() - started)
        calls += 1
    for thread in threads:
        thread.join(60)
    assert answers["huge"] and answers["under"]
    for reply in answers["huge"]:  # refused from its Content-Length, before the body is read
        assert reply.status == 413
        _assert_aws_error(reply, "SerializationException")
    for reply in answers["under"]:  # read, parsed off the loop, and refused by the model's limit of 50
        assert reply.status == 400
        _assert_aws_error(reply, "ValidationException")
        assert "Member must have length less than or equal to 50" in reply.json()["Message"]
    assert calls > 10 and slowest < NOT_FROZEN_SECONDS, (calls, slowest)


def _echo(server: RunningServer) -> str:
    from tests.support.models import build_model_tar

    return build_model_tar(server.state_dir / "hardening-echo" / "model.tar.gz").as_uri()


# 5. an unfinished request head was buffered without limit


def test_a_header_that_never_ends_gets_431_and_a_closed_connection(server: RunningServer) -> None:
    with connect(server.url) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * (100 * 1024))
        reply = read_response(sock, bytearray())
        assert read_rest(sock) == b""
    assert reply.status == 431
    _assert_aws_error(reply, "SerializationException")


def test_an_endless_url_gets_414(server: RunningServer) -> None:
    with connect(server.url) as sock:
        sock.sendall(b"GET /endpoints/" + b"a" * (100 * 1024))
        reply = read_response(sock, bytearray())
    assert reply.status == 414
    _assert_aws_error(reply, "ValidationError")  # under /endpoints/: the runtime's shape


def test_a_17_mib_header_is_cut_off_early(server: RunningServer) -> None:
    """The issue's reproducer: the server stops reading long before the 17 MiB are sent."""
    sent = 0
    with connect(server.url, timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Long: ")
        chunk = b"v" * (64 * 1024)
        try:
            while sent < 17 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server answered 431 and closed; the kernel refuses the rest
            pass
    assert sent < 17 * 1024 * 1024
    assert exchange(server.url, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").status == 200


# also: repeated headers, one error renderer


def test_a_repeated_target_header_is_refused(server: RunningServer) -> None:
    request = _control("ListModels", b"{}").replace(
        b"X-Amz-Target", b"X-Amz-Target: SageMaker.DeleteModel\r\nX-Amz-Target", 1
    )
    reply = exchange(server.url, request)
    assert reply.status == 400
    _assert_aws_error(reply, "SerializationException")
    assert "X-Amz-Target" in reply.json()["Message"]


def test_every_refusal_has_the_api_error_shape(server: RunningServer) -> None:
    # any other path is S3's (moorage/api/routing.py), turned off on this server: S3's XML error
    s3_off = exchange(server.url, b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s3_off.status == 501 and s3_off.headers[b"content-type"] == b"application/xml"
    assert b"<Code>NotImplemented</Code>" in s3_off.body and b"--no-s3" in s3_off.body
    garbage = exchange(server.url, b"NOT HTTP\r\n\r\n")
    assert garbage.status == 400
    _assert_aws_error(garbage, "SerializationException")
    runtime_too_large = exchange(
        server.url,
        b"POST /endpoints/x/invocations HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (7 * 1024 * 1024),
    )
    # AWS's own answer has no error type: boto3 names it by its status, 413 (docs/behaviour.md)
    assert runtime_too_large.status == 413
    assert runtime_too_large.json() == {"message": "HTTP content length exceeded 6291456 bytes."}


def test_the_runtime_413_is_what_boto3_sees_from_aws(smr: Any) -> None:
    error = _error(smr.invoke_endpoint, EndpointName="any", Body=b"x" * (6 * 1024 * 1024 + 1))
    assert error == {"Code": "413", "Message": "HTTP content length exceeded 6291456 bytes."}


# also: unbounded fleets


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {"MOORAGE_MAX_INSTANCES": "4", "MOORAGE_MAX_INSTANCES_PER_TYPE": "ml.g5.xlarge=1"}
    with moorage_server(tmp_path_factory.mktemp("quota"), env=env) as running:
        yield running


def _config(sm: Any, model: str, count: int, instance_type: str = "ml.m5.large") -> str:
    name = unique("cfg")
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": model,
                "InitialInstanceCount": count,
                "InstanceType": instance_type,
            }
        ],
    )
    return name


def test_instance_quotas(limited: RunningServer) -> None:
    sm = limited.client()
    model = unique("m")
    sm.create_model(ModelName=model, PrimaryContainer={"ModelDataUrl": _echo(limited)})

    def refused(config: str, endpoint: str | None = None, update: bool = False) -> str:
        call = sm.update_endpoint if update else sm.create_endpoint
        with pytest.raises(sm.exceptions.ResourceLimitExceeded) as info:
            call(EndpointName=endpoint or unique("ep"), EndpointConfigName=config)
        message: str = info.value.response["Error"]["Message"]
        return message

    assert "'Maximum number of instances per endpoint' is 2 Instances" in refused(_config(sm, model, 100000))
    assert "'ml.g5.xlarge for endpoint usage' is 1 Instances" in refused(
        _config(sm, model, 2, "ml.g5.xlarge")
    )
    first, second = unique("ep"), unique("ep")
    for name in (first, second):
        sm.create_endpoint(EndpointName=name, EndpointConfigName=_config(sm, model, 2))
    message = refused(_config(sm, model, 1))
    assert "'Total number of instances across endpoints' is 4 Instances" in message
    assert "current utilization of 4 Instances and a request delta of 1 Instances" in message
    sm.get_waiter("endpoint_in_service").wait(EndpointName=first, WaiterConfig={"Delay": 0.2})
    # blue/green: the new fleet starts beside the old one, so it needs room of its own
    refused(_config(sm, model, 1), first, update=True)
    sm.delete_endpoint(EndpointName=second)
    third = unique("ep")
    sm.create_endpoint(EndpointName=third, EndpointConfigName=_config(sm, model, 1))
    sm.get_waiter("endpoint_in_service").wait(EndpointName=third, WaiterConfig={"Delay": 0.2})
