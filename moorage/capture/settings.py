"""How often captured records are written and how many bytes of them a server holds: settings, so tests
run in a fraction of a second and a busy server can hold more.

MOORAGE_CAPTURE_FLUSH_SECONDS (default 5): the longest a captured record waits in memory before it is
written. MOORAGE_CAPTURE_MAX_BUFFER_BYTES (default 64 MiB): memory held by captured records at once,
waiting or being written (their bytes, and a fixed cost per record: records.py); a record that does not
fit is dropped, counted and reported in the endpoint log. A batch is written early once a quarter of
that is waiting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from moorage.envvars import seconds, whole_number

MIB = 1024 * 1024


@dataclass(frozen=True)
class CaptureSettings:
    flush_seconds: float = 5.0
    max_buffer_bytes: int = 64 * MIB

    def __post_init__(self) -> None:
        if not self.flush_seconds > 0:
            raise ValueError(f"MOORAGE_CAPTURE_FLUSH_SECONDS must be positive, not {self.flush_seconds}")
        if self.max_buffer_bytes < 1:
            raise ValueError(
                f"MOORAGE_CAPTURE_MAX_BUFFER_BYTES must be at least 1, not {self.max_buffer_bytes}"
            )

    @property
    def flush_bytes(self) -> int:
        """Bytes waiting that start a write before the interval is up."""
        return max(1, self.max_buffer_bytes // 4)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CaptureSettings:
        """Read MOORAGE_CAPTURE_FLUSH_SECONDS and MOORAGE_CAPTURE_MAX_BUFFER_BYTES; unset or empty is the
        default."""
        defaults = cls()
        flush_seconds = seconds(environ, "MOORAGE_CAPTURE_FLUSH_SECONDS", defaults.flush_seconds)
        max_buffer_bytes = whole_number(
            environ, "MOORAGE_CAPTURE_MAX_BUFFER_BYTES", defaults.max_buffer_bytes
        )
        return cls(flush_seconds=flush_seconds, max_buffer_bytes=max_buffer_bytes)
