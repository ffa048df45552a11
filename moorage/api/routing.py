"""Which AWS service a request on the one port is for, the way AWS's own front ends tell them apart.

A signed request names its service in the SigV4 credential scope
(``Credential=AKID/20261205/us-east-1/<service>/aws4_request``, in the Authorization header or, for
a presigned URL, in ``X-Amz-Credential``). The rest follows from the path and X-Amz-Target:

=============================================  ==============================================
request                                         service
=============================================  ==============================================
``/endpoints/…`` (any signature)                SageMaker Runtime (a bucket named ``endpoints``
                                                is not reachable through this port)
``POST /`` with ``X-Amz-Target``                the awsJson service the target's prefix names
                                                (CloudWatch's awsJson1_0 among them)
``POST /`` with a form body, ``GET /?Action=``  awsQuery: CloudWatch when signed for
                                                ``monitoring`` or, unsigned, when its
                                                ``Version`` is ``2010-08-01``; else STS
other ``POST /``                                the awsJson services (which say what is missing)
``/service/GraniteServiceVersion20100801/…``    CloudWatch (rpc-v2-cbor) unless signed for
                                                ``s3``
signed for ``s3``                               S3
unsigned ``GET/HEAD /ping``, ``/metrics``       the server's own health and metrics
anything else                                   S3
=============================================  ==============================================

The runtime test comes first and costs one prefix comparison, so the invocation path pays nothing
for the other services.
"""

from __future__ import annotations

from collections.abc import Mapping

from moorage.api.cloudwatch import RPC_PATH_PREFIX, SIGNING_NAME
from moorage.api.cloudwatch import VERSION as CLOUDWATCH_VERSION
from moorage.api.sts import is_sts_form

_CREDENTIAL = b"Credential="
_QUERY_CREDENTIAL = b"X-Amz-Credential="
OWN_PATHS = frozenset({b"/ping", b"/metrics"})  # the server's own, when unsigned
S3 = b"s3"
STS = b"sts"
MONITORING = SIGNING_NAME.encode()  # CloudWatch
_CLOUDWATCH_VERSION = b"Version=" + CLOUDWATCH_VERSION.encode()


def signing_service(url: bytes, headers: Mapping[bytes, bytes]) -> bytes | None:
    """The service in the request's SigV4 credential scope, or None for an unsigned request."""
    authorization = headers.get(b"authorization")
    if authorization is not None:
        start = authorization.find(_CREDENTIAL)
        if start < 0:
            return None
        scope = authorization[start + len(_CREDENTIAL) :].partition(b",")[0].strip()
        parts = scope.split(b"/")
    else:
        start = url.find(_QUERY_CREDENTIAL)
        if start < 0:
            return None
        scope = url[start + len(_QUERY_CREDENTIAL) :].partition(b"&")[0]
        parts = scope.replace(b"%2F", b"/").replace(b"%2f", b"/").split(b"/")
    return parts[3] if len(parts) == 5 else None


def is_s3(method: bytes, url: bytes, headers: Mapping[bytes, bytes]) -> bool:
    """Whether a request outside ``/endpoints/`` goes to S3 (see the table above)."""
    path, _, query = url.partition(b"?")
    if path == b"/" and method == b"POST":  # S3 has no POST on /; awsJson and awsQuery live there
        return False
    service = signing_service(url, headers)
    if service is not None:
        return service == S3
    if path == b"/":
        return b"Action=" not in query
    if path.startswith(RPC_PATH_PREFIX):
        return False
    return not (path in OWN_PATHS and method in (b"GET", b"HEAD"))


def is_sts(method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes) -> bool:
    """A request for ``/`` without X-Amz-Target: STS when signed for it, or when unsigned and it
    carries an ``Action`` (awsQuery, in a form body or the query string) and not CloudWatch's version."""
    return query_service(method, url, headers, body) == STS


def query_service(method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes) -> bytes | None:
    """The awsQuery service (STS or MONITORING) a request for ``/`` without X-Amz-Target is for: the one
    it is signed for, or, unsigned, the one its ``Version`` names; None when it is no awsQuery call."""
    service = signing_service(url, headers)
    if service is not None:
        return service if service in (STS, MONITORING) else None
    form = url.partition(b"?")[2] if method == b"GET" else body
    if not is_sts_form(form):
        return None
    return MONITORING if _has_parameter(form, _CLOUDWATCH_VERSION) else STS


def _has_parameter(form: bytes, pair: bytes) -> bool:
    """Whether `form` has the parameter ``name=value`` that `pair` spells, exactly."""
    return pair in form.split(b"&")
