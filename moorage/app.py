"""The one-port ASGI application: control plane at `POST /`, runtime under `/endpoints/`.

Start-up opens (and migrates) the store and brings back every endpoint the store says is InService
before the port answers; shutdown stops every instance."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from moorage.api.asgi import Receive, Scope, Send, respond
from moorage.api.control import ControlApi, operations
from moorage.api.runtime import RuntimeApi
from moorage.compute.local import LocalProvider
from moorage.config import Settings
from moorage.control.reconciler import Reconciler
from moorage.dataplane.routes import RoutingTable
from moorage.logs import EndpointLogs
from moorage.store import Store, open_store

log = logging.getLogger("moorage")
_NOT_FOUND = b'{"message": "Not found. This port serves the SageMaker API (POST /) and InvokeEndpoint."}'


class MoorageApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.table = RoutingTable()
        self.runtime = RuntimeApi(self.table, settings.account_id)
        self.control: ControlApi | None = None
        self.store: Store | None = None
        self.reconciler: Reconciler | None = None
        self._run_dir: Path | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/endpoints/"):
                await self.runtime(scope, receive, send)
            elif path == "/" and scope["method"] == "POST" and self.control is not None:
                await self.control(scope, receive, send)
            elif path == "/ping":
                await respond(send, 200, [(b"content-type", b"application/json")], b'{"status": "Healthy"}')
            else:
                await respond(send, 404, [(b"content-type", b"application/json")], _NOT_FOUND)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

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
