"""The one exception type the artifact layer raises.

Its text ends up verbatim in DescribeEndpoint's FailureReason, so it is kept to a single
line of bounded length that tells the user what to fix.
"""

from __future__ import annotations

MAX_REASON_CHARS = 900


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """Collapse whitespace (newlines included) and cut to ``limit`` characters."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return flat[: limit - 1].rstrip() + "…"


class ArtifactError(Exception):
    """A failure whose str() is a one-line FailureReason a user can act on (≤ 900 chars)."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))

    def __str__(self) -> str:
        return str(self.args[0])
