"""CPU time and resident memory of processes, read from Linux's /proc (None elsewhere)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from moorage.compute.base import ResourceUsage

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_usage(pids: Iterable[int]) -> ResourceUsage | None:
    """Summed over `pids`; processes that are gone count as nothing."""
    cpu_ticks = 0
    pages = 0
    seen = False
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        seen = True
        cpu_ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
        pages += int(fields[21])  # rss (field 24)
    if not seen:
        return None
    return ResourceUsage(cpu_ticks / _TICKS, pages * _PAGE)


def total_memory_bytes() -> int:
    """MemTotal of this machine (0 when unknown)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
