"""STS over awsQuery, read back by real boto3 (botocore's QueryParser with the sts model)."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.parsers import QueryParser

from moorage.api.sts import StsApi, is_sts_form, user_id
from moorage.auth.errors import auth_error_response
from moorage.auth.keys import AccessKey, KeyRing
from moorage.auth.sigv4 import AuthFailure, SigV4Verifier
from moorage.http.responses import Response
from tests.auth.wire import client

KEYS = KeyRing({"AKIDALICE": AccessKey("AKIDALICE", "alice-secret", "111122223333", "alice")})
FORM = {b"content-type": b"application/x-www-form-urlencoded; charset=utf-8"}


def unverified(api: StsApi) -> Any:
    return lambda method, target, headers, body: api(method, target, headers, body, None)


def verified(api: StsApi) -> Any:
    verifier = SigV4Verifier(KEYS)

    def handler(method: bytes, target: bytes, headers: Any, body: bytes) -> Response:
        try:
            caller = verifier.verify(method, target, headers, body)
        except AuthFailure as failure:
            return auth_error_response(failure, "query")
        return api(method, target, headers, body, caller)

    return handler


def test_get_caller_identity_unverified() -> None:
    sts = client("sts", unverified(StsApi("123456789012", "us-east-1")))
    identity = sts.get_caller_identity()
    assert identity["Account"] == "123456789012"
    assert identity["Arn"] == "arn:aws:iam::123456789012:user/moorage"
    assert identity["UserId"] == user_id("123456789012", "moorage")
    assert identity["UserId"].startswith("AIDA") and len(identity["UserId"]) == 21
    assert identity["ResponseMetadata"]["RequestId"]


def test_get_caller_identity_is_the_verified_callers() -> None:
    api = StsApi("123456789012", "us-east-1", users=KEYS)
    identity = client("sts", verified(api)).get_caller_identity()
    assert identity["Account"] == "111122223333"
    assert identity["Arn"] == "arn:aws:iam::111122223333:user/alice"
    with pytest.raises(ClientError) as info:
        client("sts", verified(api), secret="wrong").get_caller_identity()
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as info:
        client("sts", verified(api), key="AKIDNOBODY").get_caller_identity()
    assert info.value.response["Error"]["Code"] == "InvalidClientTokenId"


def test_the_xml_as_botocore_parses_it() -> None:
    model = botocore.session.get_session().get_service_model("sts")
    response = StsApi("123456789012", "us-west-2")(
        b"POST", b"/", FORM, b"Action=GetCallerIdentity&Version=2011-06-15", None
    )
    assert response.status == 200 and response.content_type == b"text/xml"
    assert response.body.startswith(
        b'<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
    )
    parsed = QueryParser().parse(
        {"status_code": 200, "headers": {}, "body": response.body},
        model.operation_model("GetCallerIdentity").output_shape,
    )
    assert parsed["Account"] == "123456789012"


def test_get_by_query_string() -> None:
    api = StsApi("123456789012", "us-east-1")
    response = api(b"GET", b"/?Action=GetCallerIdentity&Version=2011-06-15", {}, b"", None)
    assert response.status == 200 and b"<Account>123456789012</Account>" in response.body


def _error(response: Response) -> tuple[int, bytes]:
    assert response.content_type == b"text/xml"
    code = response.body.split(b"<Code>")[1].split(b"</Code>")[0]
    return response.status, code


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"Action=ListUsers&Version=2011-06-15", 400, b"InvalidAction"),
        (b"Version=2011-06-15", 400, b"InvalidAction"),
        (b"", 400, b"InvalidAction"),
        (b"Action=GetCallerIdentity", 400, b"InvalidAction"),
        (b"Action=GetCallerIdentity&Version=2099-01-01", 400, b"InvalidAction"),
        (
            b"Action=AssumeRole&Version=2011-06-15&RoleArn=arn:aws:iam::1:role/r&RoleSessionName=s",
            501,
            b"NotImplemented",
        ),
        (b"Action=GetSessionToken&Version=2011-06-15", 501, b"NotImplemented"),
        (b"\xff\xfe", 400, b"InvalidQueryParameter"),
        (b"Action=GetCallerIdentity&&&", 400, b"InvalidQueryParameter"),
    ],
)
def test_refusals(body: bytes, status: int, code: bytes) -> None:
    response = StsApi("123456789012", "us-east-1")(b"POST", b"/", FORM, body, None)
    assert _error(response) == (status, code)


def test_a_body_that_is_not_a_form() -> None:
    api = StsApi("123456789012", "us-east-1")
    response = api(b"POST", b"/", {b"content-type": b"application/json"}, b'{"Action": "x"}', None)
    assert _error(response) == (400, b"InvalidQueryParameter")
    assert b"form-encoded" in response.body


def test_assume_role_as_boto3_sees_it() -> None:
    sts = client("sts", unverified(StsApi("123456789012", "us-east-1")))
    with pytest.raises(ClientError) as info:
        sts.assume_role(RoleArn="arn:aws:iam::123456789012:role/r", RoleSessionName="session")
    assert info.value.response["Error"]["Code"] == "NotImplemented"
    assert "AssumeRole is not supported" in info.value.response["Error"]["Message"]
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"Action=GetCallerIdentity&Version=2011-06-15", True),
        (b"Version=2011-06-15&Action=GetCallerIdentity", True),
        (b'{"Action": "x"}', False),
        (b"", False),
        (b"NoAction=1", False),
    ],
)
def test_is_sts_form(body: bytes, expected: bool) -> None:
    assert is_sts_form(body) is expected
