"""The front door: one port, control plane at `POST /`, runtime under `/endpoints/`.

Start-up opens (and migrates) the store and brings back every endpoint the store says is InService
or Updating before the port is opened (Creating and Deleting ones resume in the background);
shutdown stops accepting, drains connections and stops every instance."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Mapping
from pathlib import Path

from moorage.api.control import MAX_CONTROL_BODY, ControlApi, operations
from moorage.api.runtime import RuntimeApi
from moorage.compute.local import LocalProvider
from moorage.config import Settings
from moorage.control.reconciler import Reconciler
from moorage.dataplane.routes import RoutingTable
from moorage.http.responses import Response, json_response
from moorage.http.server import HttpServer
from moorage.logs import EndpointLogs
from moorage.store import Store, open_store

log = logging.getLogger("moorage")
MAX_REQUEST_BYTES = MAX_CONTROL_BODY  # the runtime enforces its own 6 MiB below this
_PING = json_response({"status": "Healthy"})
_NOT_FOUND = json_response(
    {"message": "Not found. This port serves the SageMaker API (POST /) and InvokeEndpoint."}, 404
)


class MoorageApp:
    """Routes a parsed request to the control or runtime adapter."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.table = RoutingTable()
        self.runtime = RuntimeApi(self.table, settings.account_id)
        self.control: ControlApi | None = None
        self.store: Store | None = None
        self.reconciler: Reconciler | None = None
        self._run_dir: Path | None = None

    def __call__(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes
    ) -> Response | Awaitable[Response]:
        path = url.partition(b"?")[0]
        if path.startswith(b"/endpoints/"):
            return self.runtime(method, path, headers, body)
        if path == b"/" and method == b"POST" and self.control is not None:
            return self.control(headers, body)
        if path == b"/ping":
            return _PING
        return _NOT_FOUND

    def refusal(self, url: bytes, status: int, message: str) -> Response:
        """A request the HTTP server refuses, answered in the shape of the API it was sent to."""
        runtime = url.startswith(b"/endpoints/")
        if status == 413:
            return self.runtime.too_large() if runtime else ControlApi.too_large()
        return RuntimeApi.refusal(status, message) if runtime else ControlApi.refusal(status, message)

    async def startup(self) -> None:
        settings = self.settings
        self.store = open_store(settings.state_dir, settings.database_url)
        # Unix socket paths must stay short, so instance sockets live in a private temp dir.
        self._run_dir = Path(tempfile.mkdtemp(prefix="moorage-"))
        logs = EndpointLogs(settings.log_dir)
        self.reconciler = Reconciler(
            self.store, LocalProvider(self._run_dir), self.table, logs, settings, settings.default_region
        )
        self.control = ControlApi(
            operations(self.store, self.reconciler), settings.account_id, settings.default_region
        )
        await self.reconciler.restore()
        log.info("state in %s; %d endpoint(s) serving", settings.state_dir, len(self.reconciler.fleets))

    async def shutdown(self) -> None:
        if self.reconciler is not None:
            await self.reconciler.shutdown()
        if self.store is not None:
            self.store.close()
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)


async def serve(settings: Settings, ready: str | None = None) -> None:
    """Run until SIGINT/SIGTERM; `ready` is printed once the port accepts connections."""
    app = MoorageApp(settings)
    await app.startup()
    loop = asyncio.get_running_loop()
    http = HttpServer(app, MAX_REQUEST_BYTES, refusal=app.refusal)
    server = await loop.create_server(http, settings.host, settings.port, backlog=1024, reuse_address=True)
    http.enforce_timeouts(settings.idle_timeout_seconds, settings.request_timeout_seconds)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready:
        print(ready, flush=True)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        server.close()
        await http.drain(timeout=5)
        await app.shutdown()
