"""The S3 pass-through on a real port, in front of a real SeaweedFS, driven by real boto3.

The store here checks signatures (keys test/test), so these tests also show that a request reaches
it exactly as the client signed it (Host included)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from moorage.http.responses import text_response
from moorage.http.server import HttpServer, StreamHandler
from moorage.s3store.passthrough import Refusal, S3PassThrough, Store, external_store
from tests.support.seaweed import SeaweedS3

ACCOUNT = "123456789012"


class _Front:
    """A front door with nothing but the pass-through (and a 200 for anything else)."""

    def __init__(self, store: Store) -> None:
        self.passthrough = S3PassThrough(store, ACCOUNT)
        self.down = False

    def app(self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes) -> Any:
        return text_response("not S3", 200)

    def streams(self, method: bytes, url: bytes, headers: Mapping[bytes, bytes]) -> StreamHandler | None:
        if url.startswith(b"/endpoints/"):
            return None
        if self.down:
            return Refusal.error(501, "NotImplemented", "S3 is turned off", method, url, headers)
        return self.passthrough.handler(method, url, headers)


@pytest.fixture
async def front(s3_server: SeaweedS3) -> AsyncIterator[tuple[_Front, str]]:
    front = _Front(external_store(s3_server.endpoint_url))
    http = HttpServer(
        front.app, 1024 * 1024, prefix_limit=(b"/endpoints/", 6 * 1024 * 1024), streams=front.streams
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(http, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield front, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        front.passthrough.close()
        await http.drain(timeout=1)


def _client(url: str, key: str = "test", secret: str = "test", **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, **config),
    )


async def test_bucket_and_object_calls_the_sdk_makes(front: tuple[_Front, str], s3_server: SeaweedS3) -> None:
    _, url = front
    s3 = _client(url)
    bucket = f"pass-{os.urandom(4).hex()}"

    def calls() -> None:
        s3.create_bucket(Bucket=bucket)
        s3.head_bucket(Bucket=bucket)
        assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        s3.put_object(Bucket=bucket, Key="a b/ü.txt", Body=b"hello")
        head = s3.head_object(Bucket=bucket, Key="a b/ü.txt")
        assert head["ContentLength"] == 5
        assert s3.get_object(Bucket=bucket, Key="a b/ü.txt")["Body"].read() == b"hello"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="a b/")["Contents"]]
        assert keys == ["a b/ü.txt"]
        with pytest.raises(ClientError) as missing:
            s3.get_object(Bucket=bucket, Key="nope")
        assert missing.value.response["Error"]["Code"] == "NoSuchKey"
        s3.delete_object(Bucket=bucket, Key="a b/ü.txt")

    await asyncio.to_thread(calls)
    # what went through is in the store itself
    assert bucket in [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]


async def test_multipart_upload_and_download_stream_both_ways(
    front: tuple[_Front, str], s3_server: SeaweedS3, tmp_path: Path
) -> None:
    _, url = front
    s3 = _client(url)
    bucket = s3_server.create_bucket("multi")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024) * 7)  # 21 MiB
    config = TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024)

    def transfer() -> None:
        s3.upload_file(str(source), bucket, "big.bin", Config=config)
        s3.download_file(bucket, "big.bin", str(tmp_path / "back.bin"), Config=config)

    await asyncio.to_thread(transfer)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest
    stored = s3_server.client().head_object(Bucket=bucket, Key="big.bin")
    assert stored["ContentLength"] == 21 * 1024 * 1024


async def test_presigned_get_and_a_wrong_signature_reach_the_store_unchanged(
    front: tuple[_Front, str], s3_server: SeaweedS3
) -> None:
    _, url = front
    bucket = s3_server.create_bucket("sig")
    s3_server.client().put_object(Bucket=bucket, Key="k", Body=b"signed")

    def calls() -> tuple[bytes, str]:
        import urllib.request

        link = _client(url).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
        with urllib.request.urlopen(link) as response:
            body = response.read()
        bad = _client(url, secret="wrong")
        try:
            bad.get_object(Bucket=bucket, Key="k")
        except ClientError as exc:
            return body, exc.response["Error"]["Code"]
        return body, "accepted"

    body, code = await asyncio.to_thread(calls)
    assert body == b"signed"
    assert code == "SignatureDoesNotMatch"


async def test_store_down_is_a_retryable_503_and_off_is_a_clear_error(front: tuple[_Front, str]) -> None:
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    port = refused.getsockname()[1]
    refused.close()  # nothing listens there now
    front_door, url = front
    front_door.passthrough.store = Store(address=lambda: ("127.0.0.1", port), why_down=lambda: None)

    def get(client: Any) -> dict[str, Any]:
        try:
            client.get_object(Bucket="b", Key="k")
        except ClientError as exc:
            return dict(exc.response)
        raise AssertionError("expected an error")

    answer = await asyncio.to_thread(get, _client(url))
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert answer["Error"]["Code"] == "ServiceUnavailable"
    assert "Cannot reach the S3 store" in answer["Error"]["Message"]

    front_door.passthrough.store = Store(address=lambda: None, why_down=lambda: "the store is restarting")
    answer = await asyncio.to_thread(get, _client(url))
    assert answer["Error"]["Code"] == "ServiceUnavailable" and "restarting" in answer["Error"]["Message"]

    front_door.down = True
    answer = await asyncio.to_thread(get, _client(url))
    assert answer["Error"]["Code"] == "NotImplemented" and "turned off" in answer["Error"]["Message"]


def test_refusals_below_the_api_are_in_s3s_shape_on_s3_paths(tmp_path: Path) -> None:
    """Found by fuzzing: the HTTP layer's refusals of S3 requests were SageMaker JSON, which the S3
    client reads as a bare status."""
    from botocore.parsers import RestXMLParser

    from moorage.app import MoorageApp
    from moorage.config import Settings

    app = MoorageApp(Settings(state_dir=tmp_path, s3_enabled=False))
    response = app.refusal(b"/bucket/key?uploads", 431, "The request head is larger than 65536 bytes.")
    assert response.status == 431 and response.content_type == b"application/xml"
    parsed = RestXMLParser().parse({"status_code": 431, "headers": {}, "body": response.body}, None)
    assert parsed["Error"]["Code"] == "RequestHeaderSectionTooLarge"
    assert parsed["Error"]["Message"].startswith("The request head is larger")
    control = app.refusal(b"/", 400, "bad")
    assert control.content_type == b"application/x-amz-json-1.1"


async def test_a_refused_request_without_a_body_keeps_the_connection(front: tuple[_Front, str]) -> None:
    """A refusal of a bodiless request (HEAD gets no body) leaves the connection open for the next
    request; one with a body is answered at once and the connection closes."""
    front_door, url = front
    front_door.down = True
    port = int(url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"HEAD /b/k HTTP/1.1\r\nHost: x\r\n\r\nGET /endpoints/x HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 501") and b"connection: close" not in head.lower()
    second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # no body came between
    assert second.startswith(b"HTTP/1.1 200")
    length = int(second.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.write(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)  # the refusal, then the close
    assert answer.startswith(b"HTTP/1.1 501") and b"<Code>NotImplemented</Code>" in answer
    writer.close()


async def test_an_external_store_gets_requests_signed_with_the_servers_keys(
    s3_server: SeaweedS3, tmp_path: Path
) -> None:
    """`--s3-endpoint` with server credentials (as for AWS S3 itself): clients sign with keys the store
    does not know, for a Host it is not, and every request still reaches it signed properly."""
    from botocore.credentials import Credentials

    from moorage.s3store.resign import Resigner

    host = s3_server.endpoint_url.removeprefix("http://")
    resigner = Resigner(Credentials(s3_server.access_key, s3_server.secret_key), host, "http", "us-east-1")
    front = _Front(external_store(s3_server.endpoint_url, resigner))
    http = HttpServer(front.app, 1024 * 1024, prefix_limit=(b"/endpoints/", 1024), streams=front.streams)
    server = await asyncio.get_running_loop().create_server(http, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    stranger = ("a-key-the-store-never-saw", "and-its-secret")
    client = _client(url, *stranger)
    bucket = f"resign-{os.urandom(4).hex()}"
    source = tmp_path / "parts.bin"
    source.write_bytes(os.urandom(11 * 1024 * 1024))

    def calls() -> None:
        import urllib.request

        client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key="a b/ü.txt", Body=b"hello", Metadata={"k": "v"})
        assert client.get_object(Bucket=bucket, Key="a b/ü.txt")["Body"].read() == b"hello"
        assert [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="a b/")["Contents"]] == [
            "a b/ü.txt"
        ]
        parts = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
        client.upload_file(str(source), bucket, "parts.bin", Config=parts)
        for version in ("s3v4", None):  # presigned with SigV4, and with boto3's default (SigV2)
            presigner = _client(url, *stranger, signature_version=version)
            link = presigner.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": "a b/ü.txt"}
            )
            with urllib.request.urlopen(link) as response:
                assert response.read() == b"hello"

    try:
        await asyncio.to_thread(calls)
        stored = s3_server.client().head_object(Bucket=bucket, Key="parts.bin")
        assert stored["ContentLength"] == 11 * 1024 * 1024
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        writer.write(
            f"PUT /{bucket}/x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n"
            "x-amz-content-sha256: STREAMING-AWS4-HMAC-SHA256-PAYLOAD\r\n\r\n".encode()
        )
        answer = await asyncio.wait_for(reader.read(), 5)
        assert answer.startswith(b"HTTP/1.1 501") and b"chunk" in answer
        writer.close()
    finally:
        server.close()
        front.passthrough.close()
        await http.drain(timeout=1)
