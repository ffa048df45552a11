"""What a loaded model really costs: the proportional set size (PSS) of its processes.

PSS splits pages shared between processes (the workers forked from the model's main, instances forked
from one zygote) among them, so the sum over all loaded models is what they use together; RSS would
count shared pages once per process. Where smaps_rollup cannot be read, RSS stands in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol


class HasPids(Protocol):
    def pids(self) -> list[int]: ...


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def measured_bytes(pids: Iterable[int]) -> int:
    """Summed over `pids`; processes that are gone count as nothing."""
    return sum(_pss(pid) for pid in pids)


def instance_pids(socket_dir: Path, main_pid: int) -> list[int]:
    """The model instance's main and its workers, as its instance.json lists them."""
    workers = worker_pids(socket_dir).values()
    return [main_pid, *(pid for pid in workers if pid != main_pid)]


def worker_pids(socket_dir: Path) -> dict[int, int]:
    """A single-model instance's workers by index, as its instance.json lists them ({} if unreadable)."""
    try:
        info = json.loads((socket_dir / "instance.json").read_text())
        return {int(w["index"]): int(w["pid"]) for w in info.get("workers", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def group_pids(pgid: int) -> list[int]:
    """Every process in process group `pgid`: a server and all it started (workers included), unless
    one moved itself to a group of its own."""
    return process_groups().get(pgid, [])


def process_groups() -> dict[int, list[int]]:
    """Every process on the machine by process group: one pass over /proc for many groups. Blocking
    (a few ms with many processes): call from a worker thread where it runs often."""
    groups: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            pgid = int(fields[2])
        except (OSError, IndexError, ValueError):
            continue
        groups.setdefault(pgid, []).append(int(entry.name))
    return groups


def model_processes(models: Iterable[HasPids]) -> list[int]:
    """Every process of the loaded models: each model's own, and every process in its process group
    (what its model_fn or handlers started). Blocking: one pass over /proc."""
    groups = process_groups()
    pids: set[int] = set()
    for model in models:
        own = model.pids()
        pids.update(own)
        if own:
            pids.update(groups.get(own[0], []))
    return sorted(pids)
