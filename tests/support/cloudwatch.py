"""Real boto3 CloudWatch clients pinned to one wire protocol.

botocore picks CloudWatch's protocol from its model (awsQuery up to 1.42.6, awsJson1_0 from 1.42.7;
rpc-v2-cbor is listed but not botocore's pick). To speak each of them whatever botocore is installed, a
client is built from a copy of the installed cloudwatch model whose metadata names only that protocol,
found first on the session's data path. `extra_operation` adds one operation CloudWatch does not have,
so the client can send a call the server must not know; `signing_name` signs for another service."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

PROTOCOLS = ("query", "json", "smithy-rpc-v2-cbor")
EXTRA_OPERATION = "DescribeMoorageNothing"


@functools.cache
def _installed_model() -> dict[str, Any]:
    loaded: dict[str, Any] = (
        botocore.session.Session().get_component("data_loader").load_service_model("cloudwatch", "service-2")
    )
    return loaded


def cloudwatch_client(
    url: str,
    protocol: str,
    data_dir: Path,
    *,
    key: tuple[str, str] = ("test", "test"),
    region: str = "us-west-2",
    signing_name: str | None = None,
    **config: Any,
) -> Any:
    model = copy.deepcopy(_installed_model())
    metadata = model["metadata"]
    metadata["protocol"] = protocol
    metadata["protocols"] = [protocol]
    # what the JSON and CBOR serializers need, missing from the models of botocore before 1.42.7
    metadata.setdefault("targetPrefix", "GraniteServiceVersion20100801")
    metadata.setdefault("jsonVersion", "1.0")
    if signing_name is not None:
        metadata["signingName"] = signing_name
    model["operations"][EXTRA_OPERATION] = {
        "name": EXTRA_OPERATION,
        "http": {"method": "POST", "requestUri": "/"},
    }
    root = data_dir / f"{protocol}-{signing_name or 'monitoring'}"
    folder = root / "cloudwatch" / "2010-08-01"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "service-2.json").write_text(json.dumps(model))
    session = botocore.session.Session()
    session.get_component("data_loader").search_paths.insert(0, str(root))
    settings: dict[str, Any] = {"retries": {"max_attempts": 1, "mode": "standard"}, "read_timeout": 30}
    settings.update(config)
    return boto3.session.Session(botocore_session=session).client(
        "cloudwatch",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(**settings),
    )


def wire_log(client: Any) -> list[tuple[str, str, dict[str, str], bytes]]:
    """Every request the client sends from now on: method, path, headers, body (the request goes on)."""
    sent: list[tuple[str, str, dict[str, str], bytes]] = []

    def record(request: Any, **_: Any) -> None:
        path = request.url.split("://", 1)[1].partition("/")[2]
        headers = {k.lower(): v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        body = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        sent.append((request.method, "/" + path, headers, body))

    client.meta.events.register("before-send", record)
    return sent
