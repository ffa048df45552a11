"""The CloudWatch subset on the port (docs/cloudwatch.md), in each protocol a boto3 release may speak.

botocore up to 1.42.6 sends awsQuery (a form body ``Action=…&Version=2010-08-01``, XML answers). From
1.42.7 the model lists ``smithy-rpc-v2-cbor``, ``json`` and ``query``, and botocore, which takes the
first of its own priority list that the model names, sends awsJson1_0 (``X-Amz-Target: <prefix>.<Op>``);
rpc-v2-cbor (``POST /service/<prefix>/operation/<Op>``) is for the SDKs that choose it. One dispatcher
(`service.py`) serves all three; each protocol is one small module.

Only constants live here, so the routing code can import them without loading the protocols."""

from __future__ import annotations

SIGNING_NAME = "monitoring"
VERSION = "2010-08-01"
TARGET_PREFIX = "GraniteServiceVersion20100801"
RPC_PATH_PREFIX = f"/service/{TARGET_PREFIX}/operation/".encode()
TARGET_HEADER_PREFIX = f"{TARGET_PREFIX}.".encode()
