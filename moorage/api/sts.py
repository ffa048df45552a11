"""STS over awsQuery on the same port: GetCallerIdentity, so that boto3 and the SageMaker SDK can learn
the account without reaching AWS.

Requests are form-encoded (``Action=GetCallerIdentity&Version=2011-06-15``) in a POST body or in the
query string of a GET (presigned GetCallerIdentity URLs). Answers are the XML botocore's QueryParser
reads with the sts model; errors are awsQuery ``ErrorResponse`` documents.

AssumeRole is answered with an error, on purpose: honest temporary credentials need a fresh secret
that the server would then have to accept, and a server that only verifies the keys it was given
mints no secrets. Every other STS operation is refused the same way (501 NotImplemented); an action
STS does not have is ``InvalidAction`` (400), as on AWS.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from moorage.api.http import request_id
from moorage.auth.errors import query_error
from moorage.auth.keys import KeyRing
from moorage.auth.sigv4 import Caller
from moorage.http.responses import Response

VERSION = "2011-06-15"
NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/"
XML = b"text/xml"
DEFAULT_USER = "moorage"
# STS's operations (botocore's sts model); all but GetCallerIdentity are refused as not implemented
_KNOWN = frozenset(
    {
        "AssumeRole",
        "AssumeRoleWithSAML",
        "AssumeRoleWithWebIdentity",
        "AssumeRoot",
        "DecodeAuthorizationMessage",
        "GetAccessKeyInfo",
        "GetCallerIdentity",
        "GetDelegatedAccessToken",
        "GetFederationToken",
        "GetSessionToken",
        "GetWebIdentityToken",
    }
)
_FORM = b"application/x-www-form-urlencoded"


def is_sts_form(body: bytes) -> bool:
    """Whether a form (a body, or a query string) is an awsQuery call: it has an Action= parameter."""
    return body.startswith(b"Action=") or b"&Action=" in body


class StsApi:
    """The STS endpoint. ``users`` (the server's keys) names the IAM user a verified key belongs to."""

    def __init__(self, account: str, region: str, users: KeyRing | None = None) -> None:
        self.account = account
        self.region = region
        self._users = users

    def __call__(
        self,
        method: bytes,
        url: bytes,
        headers: Mapping[bytes, bytes],
        body: bytes,
        caller: Caller | None,
    ) -> Response:
        try:
            params = _params(url, headers, body)
        except ValueError as err:
            return query_error(400, "InvalidQueryParameter", f"The request is not a valid STS query: {err}")
        action = params.get("Action", "")
        version = params.get("Version") or "NO_VERSION_SPECIFIED"
        if action not in _KNOWN or version != VERSION:
            message = f"Could not find operation {action} for version {version}"
            return query_error(400, "InvalidAction", message)
        if action == "GetCallerIdentity":
            return self._get_caller_identity(caller)
        if action == "AssumeRole":
            message = (
                "AssumeRole is not supported by Moorage: it issues no temporary credentials. Sign requests "
                "with a key from the server's credentials file (moorage serve --credentials FILE)."
            )
        else:
            message = f"{action} is not supported by Moorage; only GetCallerIdentity is."
        return query_error(501, "NotImplemented", message)

    def _get_caller_identity(self, caller: Caller | None) -> Response:
        account = caller.account if caller is not None else self.account
        name = DEFAULT_USER
        if caller is not None and self._users is not None and caller.access_key in self._users:
            name = self._users[caller.access_key].name
        rid = request_id()
        body = (
            f'<GetCallerIdentityResponse xmlns="{NAMESPACE}">'
            "<GetCallerIdentityResult>"
            f"<Arn>arn:aws:iam::{account}:user/{escape(name)}</Arn>"
            f"<UserId>{user_id(account, name)}</UserId>"
            f"<Account>{account}</Account>"
            "</GetCallerIdentityResult>"
            f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata>"
            "</GetCallerIdentityResponse>"
        )
        return Response(200, body.encode("utf-8"), XML, b"x-amzn-RequestId: %s\r\n" % rid.encode())


def user_id(account: str, name: str) -> str:
    """A stable IAM-style unique id (AIDA + 17 characters) for a user name in an account."""
    digest = hashlib.sha256(f"{account}:{name}".encode()).digest()
    return "AIDA" + base64.b32encode(digest).decode("ascii")[:17]


def _params(url: bytes, headers: Mapping[bytes, bytes], body: bytes) -> dict[str, str]:
    """Query-string and form-body parameters (the body's win). ValueError says what is wrong."""
    params: dict[str, str] = {}
    _, _, query = url.partition(b"?")
    sources = [query]
    if body:
        content_type = headers.get(b"content-type", _FORM).split(b";")[0].strip().lower()
        if content_type != _FORM:
            raise ValueError(
                f"the body must be form-encoded ({_FORM.decode()}), not {content_type.decode('latin-1')}"
            )
        sources.append(body)
    for source in sources:
        if not source:
            continue
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the parameters are not UTF-8") from None
        try:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise ValueError("the parameters are not name=value pairs joined by '&'") from None
        params.update(pairs)
    return params
