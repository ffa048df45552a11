"""SigV4Verifier against requests signed by botocore's own signers."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from moorage.auth.keys import AccessKey, KeyRing
from moorage.auth.sigv4 import EMPTY_SHA256, AuthFailure, Caller, SigV4Verifier
from moorage.http.responses import Response
from tests.auth.wire import URL, client, on_the_wire

ALICE = Credentials("AKIDALICE", "alice-secret")
KEYS = KeyRing(
    {
        "AKIDALICE": AccessKey("AKIDALICE", "alice-secret", "111122223333", "alice"),
        "AKIDBOB": AccessKey("AKIDBOB", "bob-secret", "444455556666", "bob"),
    }
)
JSON = {"Content-Type": "application/x-amz-json-1.1"}


def signed(
    method: str,
    path: str,
    service: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    credentials: Credentials = ALICE,
    signer: Callable[..., Any] | None = None,
    **signer_args: Any,
) -> tuple[bytes, bytes, dict[bytes, bytes], bytes]:
    request = AWSRequest(method, URL + path, data=body, headers=dict(headers or {}))
    if signer is None:
        signer = S3SigV4Auth if service == "s3" else SigV4Auth
    signer(credentials, service, "us-east-1", **signer_args).add_auth(request)
    return on_the_wire(request.prepare())


def verify(
    request: tuple[bytes, bytes, dict[bytes, bytes], bytes], *, s3: bool = False, skew: float = 0.0
) -> Caller:
    method, target, headers, body = request
    verifier = SigV4Verifier(KEYS, now=lambda: time.time() + skew)
    return verifier.verify(method, target, headers, None if s3 else body)


def failure(request: tuple[bytes, bytes, dict[bytes, bytes], bytes], **kwargs: Any) -> AuthFailure:
    with pytest.raises(AuthFailure) as info:
        verify(request, **kwargs)
    return info.value


@pytest.mark.parametrize(
    ("service", "path", "body", "headers"),
    [
        ("sagemaker", "/", b'{"MaxResults": 5}', {**JSON, "X-Amz-Target": "SageMaker.ListModels"}),
        (
            "application-autoscaling",
            "/",
            b"{}",
            {**JSON, "X-Amz-Target": "AnyScaleFrontendService.DescribeScalableTargets"},
        ),
        ("sagemaker", "/endpoints/my-endpoint/invocations", b"[1, 2]", {"Content-Type": "application/json"}),
        (
            "sts",
            "/",
            b"Action=GetCallerIdentity&Version=2011-06-15",
            {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        ),
        ("s3", "/bucket/key.txt", b"", {}),
    ],
)
def test_good_signatures_pass(service: str, path: str, body: bytes, headers: dict[str, str]) -> None:
    caller = verify(signed("POST", path, service, body, headers), s3=service == "s3")
    assert caller == Caller("AKIDALICE", "111122223333", "us-east-1", service, None)


def test_the_account_is_the_keys() -> None:
    bob = Credentials("AKIDBOB", "bob-secret")
    assert verify(signed("POST", "/", "sagemaker", b"{}", JSON, credentials=bob)).account == "444455556666"


def test_wrong_secret() -> None:
    forged = Credentials("AKIDALICE", "not-the-secret")
    err = failure(signed("POST", "/", "sagemaker", b"{}", JSON, credentials=forged))
    assert err.kind == "bad-signature"
    assert "The Canonical String for this request should have been" in err.message


def test_unknown_key() -> None:
    stranger = Credentials("AKIDNOBODY", "whatever")
    assert failure(signed("POST", "/", "sagemaker", b"{}", JSON, credentials=stranger)).kind == "unknown-key"


@pytest.mark.parametrize("service", ["sagemaker", "sts", "application-autoscaling"])
def test_tampered_body_fails_the_signature(service: str) -> None:
    method, target, headers, _ = signed("POST", "/", service, b'{"a": 1}', JSON)
    assert failure((method, target, headers, b'{"a": 2}')).kind == "bad-signature"


def test_tampered_header_and_path() -> None:
    method, target, headers, body = signed("POST", "/endpoints/a/invocations", "sagemaker", b"x")
    assert failure((method, b"/endpoints/b/invocations", headers, body)).kind == "bad-signature"
    assert failure((b"PUT", target, headers, body)).kind == "bad-signature"
    moved = {**headers, b"host": b"127.0.0.1:7071"}
    assert failure((method, target, moved, body)).kind == "bad-signature"


def test_a_lying_content_hash_header_on_a_json_service() -> None:
    request = signed("POST", "/", "sagemaker", b"{}", {**JSON, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    assert failure(request).kind == "bad-body-hash"


@pytest.mark.parametrize("skew", [-3600.0, 3600.0, 901.0, -901.0])
def test_clock_skew(skew: float) -> None:
    err = failure(signed("POST", "/", "sagemaker", b"{}", JSON), skew=skew)
    assert err.kind == "skewed"
    wording = "Signature expired:" if skew > 0 else "Signature not yet current:"
    assert err.message.startswith(wording) and "15 min." in err.message


def test_skew_inside_the_window_passes() -> None:
    verify(signed("POST", "/", "sagemaker", b"{}", JSON), skew=600.0)
    verify(signed("POST", "/", "sagemaker", b"{}", JSON), skew=-600.0)


def test_skew_window_is_a_parameter() -> None:
    method, target, headers, body = signed("POST", "/", "sagemaker", b"{}", JSON)
    strict = SigV4Verifier(KEYS, now=lambda: time.time() + 120, max_skew_seconds=60)
    with pytest.raises(AuthFailure) as info:
        strict.verify(method, target, headers, body)
    assert info.value.kind == "skewed" and "1 min." in info.value.message


def test_date_header_instead_of_x_amz_date() -> None:
    request = signed("POST", "/", "sagemaker", b"{}", {**JSON, "Date": "Thu, 01 Jan 1970 00:00:00 GMT"})
    assert b"x-amz-date" not in request[2]
    assert verify(request).service == "sagemaker"


@pytest.mark.parametrize(
    "path",
    [
        "/endpoints/my%20endpoint/invocations",  # a space, percent-encoded once by the client
        "/endpoints/%E2%9C%93/invocations",  # unicode
        "/endpoints/a%2Fb/invocations",  # an encoded slash
        "/a/./b/../c",  # dot segments: normalized before signing
        "/a//b/",  # an empty segment
    ],
)
def test_paths_of_non_s3_services(path: str) -> None:
    verify(signed("POST", path, "sagemaker", b"x"))


@pytest.mark.parametrize(
    "path",
    [
        "/bucket/a%20b/c%2Bd",
        "/bucket/%E2%9C%93/%F0%9F%98%80",
        "/bucket/dir%2Fkey",
        "/bucket/a/../b",  # S3 keys may hold dot segments: signed as sent
        "/bucket//double",
        "/bucket/trailing/",
    ],
)
def test_s3_paths_are_not_normalized(path: str) -> None:
    request = signed("GET", path, "s3")
    assert verify(request, s3=True).service == "s3"
    # the same request canonicalized the non-S3 way would have a different signature
    if "/../" in path or "//" in path[1:] or "%" in path:
        method, target, headers, _ = request
        as_sagemaker = headers[b"authorization"].replace(b"/s3/", b"/sagemaker/")
        with pytest.raises(AuthFailure):
            SigV4Verifier(KEYS).verify(method, target, {**headers, b"authorization": as_sagemaker}, b"")


@pytest.mark.parametrize(
    "query",
    [
        "?a=2&a=1&a=10",  # repeated names sort by value
        "?b=&a",  # empty values, a name with no '='
        "?prefix=a%2Fb%20c&list-type=2",
        "?x=%E2%9C%93&y=~-_.",
        "?uploads",
    ],
)
@pytest.mark.parametrize("service", ["s3", "sagemaker"])
def test_query_strings(query: str, service: str) -> None:
    verify(signed("GET", "/bucket/k" + query, service), s3=service == "s3")


def test_query_from_another_client_is_canonicalized_as_aws_does() -> None:
    """A client that signed the canonical form but sent '~' encoded and lower-case hex still passes."""
    method, target, headers, body = signed("GET", "/bucket/k?x=a~b&y=%2F", "s3")
    assert target.endswith(b"?x=a~b&y=%2F")
    verify((method, target.replace(b"a~b", b"a%7Eb").replace(b"%2F", b"%2f"), headers, body), s3=True)


def test_s3_payload_hash_is_handed_to_the_proxy() -> None:
    body = b"hello object"
    request = signed("PUT", "/bucket/key", "s3", body)
    caller = verify(request, s3=True)
    assert caller.payload_sha256 == hashlib.sha256(body).hexdigest()
    # given the body, the verifier checks it itself
    method, target, headers, _ = request
    with pytest.raises(AuthFailure) as info:
        SigV4Verifier(KEYS).verify(method, target, headers, b"another body")
    assert info.value.kind == "bad-body-hash"


@pytest.mark.parametrize(
    "content_sha256",
    ["UNSIGNED-PAYLOAD", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"],
)
def test_s3_unsigned_and_streaming_payloads(content_sha256: str) -> None:
    # SigV4Auth signs with the X-Amz-Content-SHA256 header when one is set, as the SDKs set it
    request = signed(
        "PUT",
        "/bucket/key",
        "s3",
        b"chunked...",
        {"X-Amz-Content-SHA256": content_sha256},
        signer=SigV4Auth,
    )
    assert verify(request, s3=True).payload_sha256 is None


def test_s3_empty_body_needs_no_later_check() -> None:
    assert verify(signed("GET", "/bucket/key", "s3"), s3=True).payload_sha256 is None
    method, target, headers, _ = signed("DELETE", "/bucket/key", "s3")
    lying = {**headers, b"x-amz-content-sha256": hashlib.sha256(b"x").hexdigest().encode()}
    assert failure((method, target, lying, b""), s3=True).kind in ("bad-body-hash", "bad-signature")


def test_s3_without_a_payload_hash_header_is_malformed() -> None:
    request = signed("GET", "/bucket/key", "s3", signer=SigV4Auth)
    assert b"x-amz-content-sha256" not in request[2]
    assert failure(request, s3=True).kind == "malformed"


def test_presigned_s3_url() -> None:
    request = signed("GET", "/bucket/a%20b?versionId=3", "s3", signer=S3SigV4QueryAuth, expires=60)
    assert b"authorization" not in request[2]
    assert verify(request, s3=True) == Caller("AKIDALICE", "111122223333", "us-east-1", "s3", None)
    err = failure(request, s3=True, skew=61.0)
    assert err.kind == "expired" and err.presigned
    assert failure(request, s3=True, skew=-3600.0).kind == "skewed"


def test_presigned_sts_url() -> None:
    request = signed(
        "GET", "/?Action=GetCallerIdentity&Version=2011-06-15", "sts", signer=SigV4QueryAuth, expires=900
    )
    assert verify(request).service == "sts"
    assert failure(request, skew=901.0).kind == "expired"


def test_presigned_signature_tampering() -> None:
    method, target, headers, body = signed("GET", "/bucket/key", "s3", signer=S3SigV4QueryAuth, expires=60)
    assert (
        failure((method, target.replace(b"/key", b"/other"), headers, body), s3=True).kind == "bad-signature"
    )
    longer = target.replace(b"X-Amz-Expires=60", b"X-Amz-Expires=6000")
    assert failure((method, longer, headers, body), s3=True).kind == "bad-signature"


def test_missing_and_malformed() -> None:
    verifier = SigV4Verifier(KEYS)
    cases: list[tuple[bytes, dict[bytes, bytes], str]] = [
        (b"/", {b"host": b"h"}, "missing"),
        (b"/", {b"authorization": b"AWS AKID:c2ln"}, "malformed"),
        (
            b"/",
            {b"authorization": b"AWS4-HMAC-SHA256 Credential=AKIDALICE/x", b"x-amz-date": b"1"},
            "malformed",
        ),
        (
            b"/",
            {
                b"authorization": b"AWS4-HMAC-SHA256 "
                b"Credential=AKIDALICE/20250101/us-east-1/s3/aws4_request, "
                b"SignedHeaders=host, Signature=00",
            },
            "malformed",
        ),
        (b"/k?X-Amz-Signature=00&X-Amz-Credential=AKIDALICE", {b"host": b"h"}, "malformed"),
    ]
    for target, headers, kind in cases:
        with pytest.raises(AuthFailure) as info:
            verifier.verify(b"GET", target, headers, b"")
        assert info.value.kind == kind, (target, headers)


def test_signed_headers_must_include_host() -> None:
    method, target, headers, body = signed("POST", "/", "sagemaker", b"{}", JSON)
    no_host = headers[b"authorization"].replace(b"host;", b"")
    assert failure((method, target, {**headers, b"authorization": no_host}, body)).kind == "malformed"


def test_signing_keys_are_derived_once() -> None:
    verifier = SigV4Verifier(KEYS)
    for _ in range(3):
        method, target, headers, body = signed("POST", "/", "sagemaker", b"{}", JSON)
        verifier.verify(method, target, headers, body)
    assert len(verifier._signing_keys) == 1


def _verifying(service_body: bool) -> Callable[[bytes, bytes, Any, bytes], Response]:
    verifier = SigV4Verifier(KEYS)
    seen: list[Caller] = []

    def handler(method: bytes, target: bytes, headers: Any, body: bytes) -> Response:
        caller = verifier.verify(method, target, headers, body if service_body else None)
        seen.append(caller)
        if caller.payload_sha256 is not None:
            assert caller.payload_sha256 == hashlib.sha256(body).hexdigest()
        if service_body:
            return Response(200, b"{}", b"application/x-amz-json-1.1")
        return Response(200, b"", b"application/xml")

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def test_real_boto3_requests_verify() -> None:
    """boto3 itself signs: control plane, runtime with an odd endpoint name, autoscaling, and S3 keys."""
    handler = _verifying(service_body=True)
    client("sagemaker", handler).list_models()
    client("application-autoscaling", handler).describe_scalable_targets(ServiceNamespace="sagemaker")
    runtime = client("sagemaker-runtime", handler)
    runtime.invoke_endpoint(EndpointName="my-endpoint-1", Body=b"[1]", ContentType="application/json")
    s3_handler = _verifying(service_body=False)
    s3 = client("s3", s3_handler)
    for key in ["plain", "a b+c", "dir/✓/😀", "a%2Fb", "x/../y", "q?x=1&y"]:
        s3.put_object(Bucket="bucket", Key=key, Body=b"data " + key.encode())
        s3.list_objects_v2(Bucket="bucket", Prefix=key, Delimiter="/")
    assert [c.service for c in handler.seen] == ["sagemaker", "application-autoscaling", "sagemaker"]  # type: ignore[attr-defined]
    assert {c.service for c in s3_handler.seen} == {"s3"}  # type: ignore[attr-defined]


def test_empty_sha256_constant() -> None:
    assert hashlib.sha256(b"").hexdigest() == EMPTY_SHA256


def test_non_ascii_signed_headers_in_a_presigned_query_are_malformed_not_a_crash() -> None:
    """Found by fuzzing: a percent-encoded non-Latin-1 SignedHeaders value used to escape as a 500."""
    from moorage.auth.keys import AccessKey, KeyRing
    from moorage.auth.sigv4 import AuthFailure, SigV4Verifier

    verifier = SigV4Verifier(KeyRing({"AKID": AccessKey("AKID", "secret", "123456789012", "a")}))
    url = (
        b"/bucket/key?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261205%2Fus-east-1%2Fs3"
        b"%2Faws4_request&X-Amz-Date=20261205T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=%C4%80"
        b"&X-Amz-Signature=" + b"0" * 64
    )
    try:
        verifier.verify(b"GET", url, {b"host": b"127.0.0.1"}, None)
    except AuthFailure as failure:
        assert failure.kind == "malformed"
    else:
        raise AssertionError("accepted")


def test_boto3s_default_s3_presigned_urls_signature_version_2_verify() -> None:
    """boto3's generate_presigned_url for S3 signs with SigV2 (AWSAccessKeyId/Expires/Signature)."""
    import time as _time

    import boto3 as _boto3

    from moorage.auth.keys import AccessKey, KeyRing
    from moorage.auth.sigv4 import AuthFailure, SigV4Verifier

    ring = KeyRing({"AKIDV2": AccessKey("AKIDV2", "v2-secret", "123456789012", "a")})
    verifier = SigV4Verifier(ring)
    s3 = _boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:7070",
        region_name="us-east-1",
        aws_access_key_id="AKIDV2",
        aws_secret_access_key="v2-secret",
    )
    params = {"Bucket": "bkt", "Key": "a b/ü.txt", "ResponseContentType": "text/plain", "VersionId": "v1"}
    link = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
    assert "AWSAccessKeyId=" in link and "X-Amz-" not in link
    target = link.removeprefix("http://127.0.0.1:7070").encode()
    caller = verifier.verify(b"GET", target, {b"host": b"127.0.0.1:7070"}, None)
    assert (caller.access_key, caller.service) == ("AKIDV2", "s3")
    for bad in (target.replace(b"bkt", b"bku"), target.replace(b"GET", b"")):
        method = b"PUT" if bad == target else b"GET"
        try:
            verifier.verify(method, bad, {b"host": b"127.0.0.1:7070"}, None)
        except AuthFailure as failure:
            assert failure.kind == "bad-signature"
        else:
            raise AssertionError("a changed request was accepted")
    later = SigV4Verifier(ring, now=lambda: _time.time() + 120)
    try:
        later.verify(b"GET", target, {b"host": b"127.0.0.1:7070"}, None)
    except AuthFailure as failure:
        assert failure.kind == "expired"
    else:
        raise AssertionError("an expired URL was accepted")
