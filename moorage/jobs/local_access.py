"""Which paths on the server's disk a signed caller may name: asynchronous InputLocations and batch
transform S3Uri / S3OutputPath share one rule (docs/security.md).

Without --credentials the caller is the server's user: any path. With --credentials a path on the
server's disk must be below --local-data-root (symbolic links followed), so a signed caller cannot have
the server read, or write, any file the server's user may; s3:// is always accepted."""

from __future__ import annotations

import os
from dataclasses import dataclass

from moorage.artifacts.locations import LocalLocation
from moorage.jobs.objects import ObjectError, location


@dataclass(frozen=True)
class LocalAccess:
    """Any path (`restricted` False: no --credentials), or, when callers sign their requests, only paths
    below `root` (None: none)."""

    restricted: bool = False
    root: str | None = None

    def check(self, uri: str, field: str) -> None:
        """Raises ObjectError (a message naming `field` and --local-data-root) for a path the caller
        may not name; a location that does not parse passes here and is refused where it is used."""
        if not self.restricted:
            return
        try:
            where = location(uri, field)
        except ObjectError:
            return
        if not isinstance(where, LocalLocation):
            return
        if self.root is None:
            raise ObjectError(
                f"{field} {uri!r} is a path on the server; this server verifies signatures and accepts "
                "only s3:// locations. Use s3://, or have the server started with --local-data-root "
                "naming the folder local data may be in."
            )
        root = os.path.realpath(self.root)
        if os.path.commonpath([os.path.realpath(where.path), root]) != root:
            raise ObjectError(
                f"{field} {uri!r} is not below {self.root}, the only folder on the server that requests "
                "may read or write (--local-data-root); use a path below it or s3://."
            )
