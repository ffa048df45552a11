"""SigV4 verification end to end: one `moorage serve --credentials FILE` with the embedded S3 store, and
unchanged boto3 clients calling every service on the port (SageMaker, its runtime, Application Auto
Scaling, STS, S3). Good keys pass; a wrong secret, an unknown key, a body changed after signing, an
expired presigned URL and a skewed clock are refused with the codes docs/security.md tables, as boto3
itself reads them."""

from __future__ import annotations

import hashlib
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server

REGION = "us-west-2"
ACCOUNT = "111122223333"
ALICE = ("AKIAALICEEXAMPLE0001", "alice-secret-0123456789abcdefghijklmnop")
CI = ("AKIACIEXAMPLE0000002", "ci-secret-0123456789abcdefghijklmnopqrst")
KEYS_FILE = f"""\
[alice]
aws_access_key_id = {ALICE[0]}
aws_secret_access_key = {ALICE[1]}
aws_account_id = {ACCOUNT}

[ci]
aws_access_key_id = {CI[0]}
aws_secret_access_key = {CI[1]}
account = {ACCOUNT}
"""
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
BUCKET = "sigv4-bucket"
SKEW = timedelta(minutes=20)  # beyond the 15-minute window, either way

# service → (code for a wrong secret, for an unknown key, for a skewed clock, for an unsigned request)
CODES = {
    "sagemaker": (
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
    ),
    "sagemaker-runtime": (
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
    ),
    "application-autoscaling": (
        "InvalidSignatureException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
    ),
    "sts": (
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "MissingAuthenticationToken",
    ),
    "s3": ("SignatureDoesNotMatch", "InvalidAccessKeyId", "RequestTimeTooSkewed", "AccessDenied"),
}
SERVICES = tuple(CODES)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("sigv4")
    keys = root / "keys"
    keys.write_text(KEYS_FILE)
    keys.chmod(0o600)
    env = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_MAX_ATTEMPTS": "1"}
    with moorage_server(root / "state", env=env, args=("--credentials", str(keys))) as running:
        client(running, "s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield running


def client(server: RunningServer, service: str, key: tuple[str, str] = ALICE, **config: Any) -> Any:
    settings: dict[str, Any] = {"retries": {"max_attempts": 1, "mode": "standard"}, "read_timeout": 30}
    if service == "s3":
        settings["s3"] = {"addressing_style": "path"}
    settings.update(config)
    return boto3.session.Session().client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(**settings),
    )


def call(api: Any, service: str) -> Any:
    """One harmless call of each service, the first a notebook makes."""
    if service == "sagemaker":
        return api.list_endpoints(MaxResults=10)
    if service == "sagemaker-runtime":
        return api.invoke_endpoint(
            EndpointName="no-such-endpoint", Body=b'{"x": 1}', ContentType="application/json"
        )
    if service == "application-autoscaling":
        return api.describe_scalable_targets(ServiceNamespace="sagemaker", MaxResults=10)
    if service == "sts":
        return api.get_caller_identity()
    return api.list_objects_v2(Bucket=BUCKET, MaxKeys=10)


def error_of(fn: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        fn()
    error: dict[str, Any] = caught.value.response["Error"]
    error["HTTPStatusCode"] = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    return error


# ---------------------------------------------------------------------------------------------------
# Good keys


@pytest.mark.parametrize("key", [ALICE, CI], ids=["alice", "ci"])
def test_good_keys_pass_every_service(server: RunningServer, key: tuple[str, str]) -> None:
    assert call(client(server, "sagemaker", key), "sagemaker")["Endpoints"] == []
    # signed and verified: the runtime answers for the endpoint, not for the signature
    error = error_of(lambda: call(client(server, "sagemaker-runtime", key), "sagemaker-runtime"))
    assert error["Code"] == "ValidationError" and "no-such-endpoint" in error["Message"]
    targets = call(client(server, "application-autoscaling", key), "application-autoscaling")
    assert targets["ScalableTargets"] == []
    identity = call(client(server, "sts", key), "sts")
    user = "alice" if key == ALICE else "ci"
    assert identity["Account"] == ACCOUNT
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{user}"
    s3 = client(server, "s3", key)
    s3.put_object(Bucket=BUCKET, Key=f"{user}/hello.txt", Body=b"hello from " + user.encode())
    got = s3.get_object(Bucket=BUCKET, Key=f"{user}/hello.txt")["Body"].read()
    assert got == b"hello from " + user.encode()
    listed = s3.list_buckets()
    assert BUCKET in [bucket["Name"] for bucket in listed["Buckets"]]
    assert listed["Owner"]["ID"] == ACCOUNT


def test_created_resources_carry_the_keys_account(server: RunningServer, tmp_path: Path) -> None:
    data = build_model_tar(tmp_path / "model.tar.gz").as_uri()
    sm = client(server, "sagemaker", CI)
    model = sm.create_model(
        ModelName="sigv4-model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "x/y:1", "ModelDataUrl": data},
    )
    config = sm.create_endpoint_config(
        EndpointConfigName="sigv4-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "sigv4-model",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    assert model["ModelArn"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model/sigv4-model"
    assert config["EndpointConfigArn"] == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint-config/sigv4-config"
    described = client(server, "sagemaker", ALICE).describe_model(ModelName="sigv4-model")
    assert described["ModelArn"] == model["ModelArn"]
    # S3 knows the account too: the expected bucket owner is checked against it
    s3 = client(server, "s3")
    s3.head_bucket(Bucket=BUCKET, ExpectedBucketOwner=ACCOUNT)
    error = error_of(lambda: s3.list_objects_v2(Bucket=BUCKET, ExpectedBucketOwner="999988887777"))
    assert error["Code"] == "AccessDenied"


def test_presigned_urls_within_their_time_work(server: RunningServer) -> None:
    s3 = client(server, "s3", signature_version="s3v4")  # boto3 presigns S3 with SigV2 unless told
    s3.put_object(Bucket=BUCKET, Key="presigned.txt", Body=b"presigned body")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "presigned.txt"}, ExpiresIn=60
    )
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"presigned body"
    url = client(server, "sts").generate_presigned_url("get_caller_identity", ExpiresIn=60, HttpMethod="GET")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert f"<Account>{ACCOUNT}</Account>".encode() in response.read()


def test_unsigned_ping_still_answers(server: RunningServer) -> None:
    with urllib.request.urlopen(f"{server.url}/ping", timeout=5) as response:
        assert response.status == 200


# ---------------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize("service", SERVICES)
def test_wrong_secret_is_refused(server: RunningServer, service: str) -> None:
    api = client(server, service, (ALICE[0], "not-alice-secret"))
    error = error_of(lambda: call(api, service))
    assert (error["Code"], error["HTTPStatusCode"]) == (CODES[service][0], 403)


@pytest.mark.parametrize("service", SERVICES)
def test_unknown_key_is_refused(server: RunningServer, service: str) -> None:
    api = client(server, service, ("AKIANOBODYEXAMPLE999", ALICE[1]))
    error = error_of(lambda: call(api, service))
    assert (error["Code"], error["HTTPStatusCode"]) == (CODES[service][1], 403)


@pytest.mark.parametrize("service", SERVICES)
def test_unsigned_request_is_refused(server: RunningServer, service: str) -> None:
    api = client(server, service, signature_version=UNSIGNED)
    error = error_of(lambda: call(api, service))
    assert (error["Code"], error["HTTPStatusCode"]) == (CODES[service][3], 403)


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("direction", [-1, 1], ids=["behind", "ahead"])
def test_skewed_clock_is_refused(
    server: RunningServer, service: str, direction: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: real() + direction * SKEW)
    error = error_of(lambda: call(client(server, service), service))
    assert (error["Code"], error["HTTPStatusCode"]) == (CODES[service][2], 403)
    if service != "s3":
        wording = "Signature expired" if direction < 0 else "Signature not yet current"
        assert wording in error["Message"]


# (operation, what the signed body contains, what it is changed into after signing) per service
TAMPER = {
    "sagemaker": ("ListEndpoints", b'"MaxResults": 10', b'"MaxResults": 11'),
    "sagemaker-runtime": ("InvokeEndpoint", b'{"x": 1}', b'{"x": 2}'),
    "application-autoscaling": ("DescribeScalableTargets", b'"MaxResults": 10', b'"MaxResults": 11'),
    "sts": (
        "GetCallerIdentity",
        b"Action=GetCallerIdentity&Version=2011-06-15",
        b"Version=2011-06-15&Action=GetCallerIdentity",
    ),
}


def _tamper(old: bytes, new: bytes) -> Callable[..., None]:
    def handler(request: Any, **_: Any) -> None:
        body = request.body
        data = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else body.read()
        assert old in data, data
        request.body = data.replace(old, new)

    return handler


@pytest.mark.parametrize("service", tuple(TAMPER))
def test_body_changed_after_signing_is_refused(server: RunningServer, service: str) -> None:
    api = client(server, service)
    operation, old, new = TAMPER[service]
    api.meta.events.register(f"before-send.*.{operation}", _tamper(old, new))
    error = error_of(lambda: call(api, service))
    assert (error["Code"], error["HTTPStatusCode"]) == (CODES[service][0], 403)


def test_s3_put_with_a_body_changed_after_signing_is_refused_and_stores_nothing(
    server: RunningServer,
) -> None:
    s3 = client(server, "s3")
    s3.meta.events.register("before-send.s3.PutObject", _tamper(b"signed body", b"forged body"))
    error = error_of(lambda: s3.put_object(Bucket=BUCKET, Key="tampered.txt", Body=b"the signed body"))
    assert (error["Code"], error["HTTPStatusCode"]) == ("XAmzContentSHA256Mismatch", 400)
    error = error_of(lambda: client(server, "s3").head_object(Bucket=BUCKET, Key="tampered.txt"))
    assert error["HTTPStatusCode"] == 404
    listed = client(server, "s3").list_objects_v2(Bucket=BUCKET, Prefix="tampered")
    assert listed.get("Contents", []) == []


def _fetch_error(url: str, service: str, operation: str) -> dict[str, Any]:
    """GET a presigned URL that must be refused; the error as botocore's parser for `service` reads it."""
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(url, timeout=10)
    refused = caught.value
    model = boto3.session.Session().client(service, region_name=REGION).meta.service_model
    protocol = model.metadata["protocol"]
    parsed = create_parser(protocol).parse(
        {"status_code": refused.code, "headers": dict(refused.headers), "body": refused.read()},
        model.operation_model(operation).output_shape,
    )
    error: dict[str, Any] = parsed["Error"]
    error["HTTPStatusCode"] = refused.code
    return error


def test_expired_presigned_urls_are_refused(server: RunningServer) -> None:
    s3 = client(server, "s3", signature_version="s3v4")
    s3.put_object(Bucket=BUCKET, Key="expiring.txt", Body=b"soon gone")
    s3_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "expiring.txt"}, ExpiresIn=1
    )
    sts_url = client(server, "sts").generate_presigned_url(
        "get_caller_identity", ExpiresIn=1, HttpMethod="GET"
    )
    time.sleep(2.1)
    error = _fetch_error(s3_url, "s3", "GetObject")
    assert (error["Code"], error["HTTPStatusCode"]) == ("AccessDenied", 403)
    assert "expired" in error["Message"]
    error = _fetch_error(sts_url, "sts", "GetCallerIdentity")
    assert (error["Code"], error["HTTPStatusCode"]) == ("SignatureDoesNotMatch", 403)
    assert "Signature expired" in error["Message"]


# ---------------------------------------------------------------------------------------------------
# Found in review: ways around the body and header checks


def _raw(server: RunningServer, data: bytes) -> bytes:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("version", ["s3v4", "s3"])
def test_a_presigned_put_cannot_carry_unsigned_x_amz_headers(server: RunningServer, version: str) -> None:
    """A presigned PUT used with an x-amz-copy-source it was not signed for would copy any object."""
    s3 = client(server, "s3")
    s3.put_object(Bucket=BUCKET, Key="secret.txt", Body=b"TOP SECRET")
    signer = client(server, "s3", signature_version=version)
    key = f"drop-{version}"
    link = signer.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=600)
    request = urllib.request.Request(
        link, data=b"", method="PUT", headers={"x-amz-copy-source": f"/{BUCKET}/secret.txt"}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403 and b"<Code>AccessDenied</Code>" in refused.value.read()
    assert error_of(lambda: s3.head_object(Bucket=BUCKET, Key=key))["HTTPStatusCode"] == 404
    plain = urllib.request.Request(link, data=b"fine", method="PUT")
    assert urllib.request.urlopen(plain, timeout=10).status == 200  # the URL itself still works


def test_a_signed_empty_body_hash_cannot_carry_a_body(server: RunningServer) -> None:
    """A captured bodiless PUT (its signature covers the empty-body hash, not Content-Length) replayed
    with a body must not store that body."""
    host = server.url.removeprefix("http://")
    request = AWSRequest(
        method="PUT",
        url=f"{server.url}/{BUCKET}/replayed",
        headers={"x-amz-content-sha256": hashlib.sha256(b"").hexdigest()},
    )
    S3SigV4Auth(Credentials(*ALICE), "s3", REGION).add_auth(request)
    evil = b"EVIL PAYLOAD, not what was signed"
    signed = b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in request.headers.items())
    answer = _raw(
        server,
        b"PUT /%s/replayed HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s"
        % (BUCKET.encode(), host.encode(), signed, len(evil), evil),
    )
    assert answer.startswith(b"HTTP/1.1 400") and b"XAmzContentSHA256Mismatch" in answer
    assert (
        error_of(lambda: client(server, "s3").head_object(Bucket=BUCKET, Key="replayed"))["HTTPStatusCode"]
        == 404
    )


def test_a_signature_made_for_s3_does_not_open_sagemaker(server: RunningServer) -> None:
    """Signed for s3 with UNSIGNED-PAYLOAD, a CreateModel could carry any body: the scope must name
    the service the request is for."""
    body = json.dumps(
        {"ModelName": "scoped-for-s3", "ExecutionRoleArn": ROLE, "PrimaryContainer": {"Image": "x"}}
    )
    request = AWSRequest(
        method="POST",
        url=f"{server.url}/",
        data=b"{}",
        headers={
            "X-Amz-Target": "SageMaker.CreateModel",
            "Content-Type": "application/x-amz-json-1.1",
            "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        },
    )
    S3SigV4Auth(Credentials(*ALICE), "s3", REGION).add_auth(request)
    headers = b"".join(
        b"%s: %s\r\n" % (k.encode(), v.encode())
        for k, v in request.headers.items()
        if k.lower() != "content-length"
    )
    host = server.url.removeprefix("http://").encode()
    answer = _raw(
        server,
        b"POST / HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s"
        % (host, headers, len(body), body.encode()),
    )
    assert answer.startswith(b"HTTP/1.1 4"), answer[:300]
    assert not client(server, "sagemaker").list_models(NameContains="scoped-for-s3")["Models"]
