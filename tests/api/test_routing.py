"""The one-port routing rule: which service a request is for, signed or not."""

from __future__ import annotations

import boto3
import pytest
from botocore.auth import S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from moorage.api.routing import is_s3, is_sts, signing_service

CREDENTIALS = Credentials("AKIDEXAMPLE", "secret")


def _signed(
    service: str, method: str, url: str, body: bytes = b""
) -> tuple[bytes, bytes, dict[bytes, bytes]]:
    request = AWSRequest(method=method, url=f"http://127.0.0.1:7070{url}", data=body)
    SigV4Auth(CREDENTIALS, service, "us-east-1").add_auth(request)
    headers = {
        k.lower().encode(): v.encode() if isinstance(v, str) else v for k, v in request.headers.items()
    }
    return method.encode(), url.encode(), headers


@pytest.mark.parametrize("service", ["s3", "sts", "sagemaker", "application-autoscaling", "monitoring"])
def test_the_scope_names_the_service(service: str) -> None:
    _, url, headers = _signed(service, "GET", "/x")
    assert signing_service(url, headers) == service.encode()


def test_a_presigned_url_names_its_service_in_the_query() -> None:
    request = AWSRequest(method="GET", url="http://127.0.0.1:7070/bucket/key")
    S3SigV4QueryAuth(CREDENTIALS, "s3", "us-east-1", expires=60).add_auth(request)
    url = request.url.removeprefix("http://127.0.0.1:7070").encode()
    assert signing_service(url, {}) == b"s3"
    assert is_s3(b"GET", url, {})


def test_signed_requests_go_where_their_scope_says() -> None:
    assert is_s3(*_signed("s3", "GET", "/"))  # ListBuckets
    assert is_s3(*_signed("s3", "GET", "/ping"))  # a bucket named ping, when signed for S3
    assert not is_s3(*_signed("sts", "POST", "/"))
    method, url, headers = _signed("sts", "POST", "/", b"Action=GetCallerIdentity&Version=2011-06-15")
    assert is_sts(method, url, headers, b"Action=GetCallerIdentity&Version=2011-06-15")
    method, url, headers = _signed("sagemaker", "POST", "/", b"{}")
    assert not is_sts(method, url, headers, b"Action=GetCallerIdentity")


def test_unsigned_requests_follow_the_documented_rule() -> None:
    assert is_s3(b"PUT", b"/bucket/key", {})
    assert is_s3(b"GET", b"/", {})
    assert not is_s3(b"GET", b"/ping", {})
    assert not is_s3(b"HEAD", b"/metrics", {})
    assert not is_s3(b"POST", b"/", {})
    assert not is_s3(b"GET", b"/?Action=GetCallerIdentity", {})
    assert is_sts(b"POST", b"/", {}, b"Version=2011-06-15&Action=GetCallerIdentity")
    assert is_sts(b"GET", b"/?Action=GetCallerIdentity&Version=2011-06-15", {}, b"")
    assert not is_sts(b"POST", b"/", {}, b'{"Action=": 1}')


def test_boto3_clients_sign_for_the_services_the_rule_expects() -> None:
    """The scope botocore really puts on each client's requests (the runtime signs as sagemaker)."""
    seen: dict[str, bytes | None] = {}
    for service in ("s3", "sts", "sagemaker", "sagemaker-runtime", "application-autoscaling"):
        client = boto3.client(
            service,
            endpoint_url="http://127.0.0.1:9",
            region_name="us-east-1",
            aws_access_key_id="a",
            aws_secret_access_key="b",
        )

        def capture(request: AWSRequest, service: str = service, **_: object) -> None:
            headers = {
                k.lower().encode(): (v.encode() if isinstance(v, str) else v)
                for k, v in request.headers.items()
            }
            seen[service] = signing_service(b"/", headers)
            raise _Stop

        client.meta.events.register_last("before-send", capture)
        operation = {
            "s3": lambda c: c.list_buckets(),
            "sts": lambda c: c.get_caller_identity(),
            "sagemaker": lambda c: c.list_endpoints(),
            "sagemaker-runtime": lambda c: c.invoke_endpoint(EndpointName="e", Body=b"{}"),
            "application-autoscaling": lambda c: c.describe_scalable_targets(ServiceNamespace="sagemaker"),
        }[service]
        with pytest.raises(_Stop):
            operation(client)
    assert seen == {
        "s3": b"s3",
        "sts": b"sts",
        "sagemaker": b"sagemaker",
        "sagemaker-runtime": b"sagemaker",
        "application-autoscaling": b"application-autoscaling",
    }


class _Stop(Exception):
    pass
