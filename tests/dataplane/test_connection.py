"""WorkerClient against a real HTTP/1.1 server on a Unix socket: round trips, keep-alive and failures."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from moorage.dataplane.connection import WorkerClient, WorkerLost, WorkerUnavailable

from .servers import Answer, Request, TinyServer, answering, hanging, response


def _post(path: bytes = b"/invocations", body: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nhost: instance\r\ncontent-length: %d\r\n\r\n%s" % (path, len(body), body)


def test_round_trip(tmp_path: Path) -> None:
    """Status, headers and body come back as the worker sent them; the request bytes arrive unchanged."""

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, answering(201)) as server:
            client = WorkerClient(path)
            reply = await client.request(_post(b"/invocations", b'{"x": 1}'), timeout=5)
            client.close()
        assert reply.status == 201
        assert reply.body == b'{"x": 1}'
        assert reply.header(b"x-seen") == b"POST /invocations HTTP/1.1"
        assert reply.header(b"content-length") == b"8"
        assert reply.header(b"absent") is None
        assert [r.body for r in server.requests] == [b'{"x": 1}']

    asyncio.run(scenario())


def test_header_lookup_ignores_the_case_the_worker_used(tmp_path: Path) -> None:
    """`header()` takes a lower-case name and finds it whatever case the worker wrote."""

    async def handle(request: Request) -> Answer:
        return response(200, b"", ((b"Content-Type", b"text/csv"),))

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, handle):
            reply = await WorkerClient(path).request(_post(), timeout=5)
        assert reply.header(b"content-type") == b"text/csv"

    asyncio.run(scenario())


def test_keep_alive_reuses_one_connection(tmp_path: Path) -> None:
    """Sequential requests share one connection to the worker."""

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, answering()) as server:
            client = WorkerClient(path)
            bodies = [(await client.request(_post(body=b"%d" % i), timeout=5)).body for i in range(5)]
            client.close()
        assert bodies == [b"0", b"1", b"2", b"3", b"4"]
        assert server.connections == 1

    asyncio.run(scenario())


def test_concurrent_requests_use_separate_connections(tmp_path: Path) -> None:
    """Requests in flight at once never share a connection, and each gets its own answer."""

    async def slow_echo(request: Request) -> Answer:
        await asyncio.sleep(0.05)
        return response(200, request.body)

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, slow_echo) as server:
            client = WorkerClient(path)
            replies = await asyncio.gather(
                *(client.request(_post(body=b"%d" % i), timeout=5) for i in range(4))
            )
            client.close()
        assert [r.body for r in replies] == [b"0", b"1", b"2", b"3"]
        assert server.connections == 4

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("close_header", "max_idle"),
    [(True, 64), (False, 0)],
    ids=["connection-close-from-worker", "no-idle-pool"],
)
def test_connection_not_reused(tmp_path: Path, close_header: bool, max_idle: int) -> None:
    """A response with `connection: close`, or a pool with no room, means a fresh connection next time."""

    async def handle(request: Request) -> Answer:
        return response(200, b"ok", close=close_header)

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, handle) as server:
            client = WorkerClient(path, max_idle=max_idle)
            for _ in range(3):
                assert (await client.request(_post(), timeout=5)).body == b"ok"
            client.close()
        assert server.connections == 3

    asyncio.run(scenario())


def test_idle_connection_closed_by_worker_is_not_reused(tmp_path: Path) -> None:
    """A keep-alive connection the worker later closed (say, it was re-forked) is skipped, not failed on."""

    async def answer_then_hang_up(request: Request) -> Answer:
        return Answer(response(200, b"ok").raw, close=True)  # no `connection: close` header

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, answer_then_hang_up) as server:
            client = WorkerClient(path)
            assert (await client.request(_post(), timeout=5)).body == b"ok"
            await asyncio.sleep(0.05)  # let the client see the close
            assert (await client.request(_post(), timeout=5)).body == b"ok"
            client.close()
        assert server.connections == 2

    asyncio.run(scenario())


def test_chunked_and_large_bodies(tmp_path: Path) -> None:
    """Chunked transfer encoding and bodies spanning many reads are reassembled."""
    big = bytes(range(256)) * 8192  # 2 MiB

    async def handle(request: Request) -> Answer:
        if request.line.startswith(b"POST /chunked"):
            return Answer(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
        return response(200, big)

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, handle) as server:
            client = WorkerClient(path)
            assert (await client.request(_post(b"/chunked"), timeout=5)).body == b"abcde"
            assert (await client.request(_post(b"/big"), timeout=5)).body == big
            assert (await client.request(_post(b"/chunked"), timeout=5)).body == b"abcde"
            client.close()
        assert server.connections == 1

    asyncio.run(scenario())


def test_unavailable_when_no_socket(tmp_path: Path) -> None:
    """No socket file at all: WorkerUnavailable (nothing was sent, so another worker may take it)."""

    async def scenario() -> None:
        with pytest.raises(WorkerUnavailable):
            await WorkerClient(str(tmp_path / "missing.sock")).request(_post(), timeout=5)

    asyncio.run(scenario())


def test_unavailable_when_socket_file_has_no_listener(tmp_path: Path) -> None:
    """A socket file left behind by a dead worker refuses the connection: WorkerUnavailable."""
    path = str(tmp_path / "stale.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(path)  # bound, never listening

        async def scenario() -> None:
            with pytest.raises(WorkerUnavailable):
                await WorkerClient(path).request(_post(), timeout=5)

        asyncio.run(scenario())


def test_lost_when_worker_closes_mid_request(tmp_path: Path) -> None:
    """The worker read the request and hung up: WorkerLost, and the next request gets a new connection."""

    async def drop_first(request: Request) -> Answer | None:
        return None if request.line.startswith(b"POST /drop") else response(200, b"ok")

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, drop_first) as server:
            client = WorkerClient(path)
            with pytest.raises(WorkerLost):
                await client.request(_post(b"/drop"), timeout=5)
            assert (await client.request(_post(), timeout=5)).body == b"ok"
            client.close()
        assert server.connections == 2

    asyncio.run(scenario())


def test_lost_on_malformed_response(tmp_path: Path) -> None:
    """Bytes that are not HTTP count as a lost worker, not as a response."""

    async def garbage(request: Request) -> Answer:
        return Answer(b"this is not http\r\n\r\n")

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, garbage):
            with pytest.raises(WorkerLost):
                await WorkerClient(path).request(_post(), timeout=5)

    asyncio.run(scenario())


def test_timeout_when_worker_never_answers(tmp_path: Path) -> None:
    """No answer within the budget: TimeoutError."""

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, hanging) as server:
            with pytest.raises(TimeoutError):
                await WorkerClient(path).request(_post(), timeout=0.1)
        assert len(server.requests) == 1

    asyncio.run(scenario())


def test_late_answer_never_reaches_the_next_request(tmp_path: Path) -> None:
    """After a timeout the connection is dropped, so a late answer cannot be taken for the next one's."""

    async def slow_first(request: Request) -> Answer:
        if request.line.startswith(b"POST /slow"):
            await asyncio.sleep(0.3)
            return response(200, b"late")
        return response(200, b"fresh")

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, slow_first) as server:
            client = WorkerClient(path)
            with pytest.raises(TimeoutError):
                await client.request(_post(b"/slow"), timeout=0.05)
            assert (await client.request(_post(), timeout=5)).body == b"fresh"
            await asyncio.sleep(0.3)
            assert (await client.request(_post(), timeout=5)).body == b"fresh"
            client.close()
        assert server.connections == 2

    asyncio.run(scenario())


def test_no_connections_while_the_worker_is_being_replaced(tmp_path: Path) -> None:
    """Between killing a hung worker and its exit, its socket may still accept: nothing may go there."""

    async def scenario() -> None:
        path = str(tmp_path / "w.sock")
        async with TinyServer(path, answering(200)):
            client = WorkerClient(path)
            client.replacing = True
            with pytest.raises(WorkerUnavailable, match="being replaced"):
                await client.connect()
            client.replaced()
            reply = await client.request(_post(b"/invocations", b"{}"), timeout=5)
            client.close()
        assert reply.status == 200

    asyncio.run(scenario())
