"""ListBuckets for the embedded store, answered here from its filer's directory listing.

SeaweedFS without identities answers ListBuckets with an empty list (it filters buckets by owner,
and an anonymous caller owns none), although every bucket is there for HeadBucket, ListObjectsV2 and
the rest. `aws s3 ls` and the SDK's bucket look-up expect the truth, so the list comes from the
filer's `/buckets/` directory instead, in S3's own XML, owned by the server's account.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from moorage.api.http import request_id
from moorage.api.s3xml import XML
from moorage.http.responses import Response, render_head
from moorage.http.server import StreamSink
from moorage.s3store.passthrough import Address, Answering, error_response

_PAGE = 1000
_TIMEOUT = 30.0
_NS = "http://s3.amazonaws.com/doc/2006-03-01/"


async def bucket_entries(filer: Address) -> list[tuple[str, str]]:
    """(name, creation time) of every bucket, in name order, read from the filer's HTTP API."""
    found: list[tuple[str, str]] = []
    last = ""
    while True:
        listing = await _get_json(filer, f"/buckets/?limit={_PAGE}&lastFileName={last}")
        entries = listing.get("Entries")
        entries = entries if isinstance(entries, list) else []
        for entry in entries:
            name = str(entry.get("FullPath", "")).rsplit("/", 1)[-1]
            if name and not name.startswith(".") and int(entry.get("Mode", 0)) & 0x80000000:  # a directory
                found.append((name, str(entry.get("Crtime") or entry.get("Mtime") or "")))
        if not listing.get("ShouldDisplayLoadMore") or not entries:
            return found
        last = str(listing.get("LastFileName", ""))


async def _get_json(address: Address, target: str) -> dict[str, object]:
    reader, writer = await asyncio.open_connection(*address)
    try:
        host = f"{address[0]}:{address[1]}"
        writer.write(f"GET {target} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n".encode())
        raw = await reader.read()
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or head.split(b" ", 2)[1] != b"200":
        status = head.partition(b"\r\n")[0].decode("latin-1")
        raise OSError(f"the store's filer answered {status!r}")
    loaded = json.loads(body)
    return loaded if isinstance(loaded, dict) else {}


def list_buckets_xml(buckets: list[tuple[str, str]], account: str, query: bytes) -> bytes:
    """ListAllMyBucketsResult for `buckets`, with S3's `prefix`, `max-buckets` and `continuation-token`."""
    params = {key: values[0] for key, values in parse_qs(query.decode("latin-1")).items()}
    prefix = params.get("prefix", "")
    after = params.get("continuation-token", "")
    limit = int(params["max-buckets"]) if params.get("max-buckets", "").isdigit() else 10000
    chosen = [(name, made) for name, made in buckets if name.startswith(prefix) and name > after]
    page, more = chosen[: max(1, limit)], len(chosen) > max(1, limit)
    items = "".join(
        f"<Bucket><Name>{escape(name)}</Name><CreationDate>{escape(_iso(made))}</CreationDate></Bucket>"
        for name, made in page
    )
    token = f"<ContinuationToken>{escape(page[-1][0])}</ContinuationToken>" if more and page else ""
    shown_prefix = f"<Prefix>{escape(prefix)}</Prefix>" if prefix else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult xmlns="{_NS}">'
        f"<Owner><ID>{account}</ID><DisplayName>{account}</DisplayName></Owner>"
        f"<Buckets>{items}</Buckets>{token}{shown_prefix}</ListAllMyBucketsResult>"
    ).encode()


def _iso(stamp: str) -> str:
    """The filer's RFC 3339 time as S3 writes it (milliseconds, Z)."""
    date, _, rest = stamp.partition("T")
    if not rest:
        return stamp
    clock = rest.rstrip("Z").split("+")[0].split(".")[0]
    return f"{date}T{clock}.000Z"


class ListBuckets(Answering):
    """The stream handler for `GET /` on the embedded store."""

    def __init__(self, filer: Callable[[], Address | None], account: str, query: bytes) -> None:
        self._filer = filer
        self._account = account
        self._query = query
        self._task: asyncio.Task[None] | None = None

    def start(self, sink: StreamSink) -> None:
        self._task = asyncio.get_running_loop().create_task(self._answer(sink))

    async def _answer(self, sink: StreamSink) -> None:
        filer = self._filer()
        try:
            if filer is None:
                raise OSError("the embedded S3 store is not running")
            buckets = await asyncio.wait_for(bucket_entries(filer), _TIMEOUT)
        except (OSError, ValueError, TimeoutError) as exc:
            sink.write(
                error_response(503, "ServiceUnavailable", f"Cannot list buckets now ({exc}). Retry shortly.")
            )
            sink.finish(keep_alive=False)
            return
        body = list_buckets_xml(buckets, self._account, self._query)
        rid = b"x-amz-request-id: %s\r\n" % request_id().encode()
        sink.write(render_head(Response(200, body, XML, rid), close=False) + body)
        sink.finish(keep_alive=True)

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
