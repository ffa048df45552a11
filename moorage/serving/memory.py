"""A serverless instance's memory cap: ServerlessConfig.MemorySizeInMB, set as the main process's
RLIMIT_DATA before the model loads, so the model, and every worker forked from the main, gets a
MemoryError at the cap instead of taking the machine's memory (or the out-of-memory killer's notice).

RLIMIT_DATA (heap and private anonymous mappings, Linux 4.7+) rather than RLIMIT_AS: it does not count
address space that is only reserved (thread stacks, allocator arenas, mapped files), so a model that
fits is not refused for reservations it never touches. The cap is per process: each worker may use up
to MemorySizeInMB on top of what it shares with the main."""

from __future__ import annotations

import resource
from collections.abc import Mapping

VARIABLE = "MOORAGE_MEMORY_LIMIT_MB"
_limit_mb: int | None = None


def apply_limit(environ: Mapping[str, str]) -> int | None:
    """Cap this process (and what it forks) at the MiB the environment gives; None when it gives none."""
    global _limit_mb
    text = environ.get(VARIABLE, "").strip()
    if not text:
        return None
    limit = int(text) * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    _limit_mb = int(text)
    return _limit_mb


def explain(text: str) -> str:
    """A MemoryError's message, plus what to change when this instance runs under a cap."""
    if _limit_mb is None:
        return text
    return (
        f"{text} (MemoryError: the instance's memory is capped at {_limit_mb} MB by "
        "ServerlessConfig.MemorySizeInMB; raise MemorySizeInMB or use less memory)"
    )
