"""Linux /proc helpers for the benchmark: process trees, CPU ticks, memory, a quiet gate, and
launching servers that can always be stopped again.

Moorage starts its instances in their own sessions, so session ids cannot tell which processes
belong to a server; the parent chain can. Every PID is remembered with its start time, so a PID
the kernel reused for an unrelated process is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

HZ = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    state: str
    ppid: int
    cpu_ticks: int  # utime + stime
    start_time: int  # clock ticks after boot; with the pid, identifies a process


def read_stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return Stat(rest[0], int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[19]))


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _all_stats() -> dict[int, Stat]:
    out: dict[int, Stat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = read_stat(int(entry))
            if st is not None and st.state != "Z":
                out[int(entry)] = st
    return out


def descendants(root: int, stats: Mapping[int, Stat] | None = None) -> list[int]:
    """``root`` (if alive) and every live process below it, parents before children."""
    stats = _all_stats() if stats is None else stats
    children: dict[int, list[int]] = {}
    for pid, st in stats.items():
        children.setdefault(st.ppid, []).append(pid)
    out = [root] if root in stats else []
    i = 0
    while i < len(out):
        out.extend(sorted(children.get(out[i], [])))
        i += 1
    return out


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB; PSS splits pages shared with other processes (forked workers, libraries)."""
    rss = pss = 0
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
                    break
    return rss, pss


def system_busy_ticks() -> int:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4]  # all but idle and iowait


def tree_cpu_ticks(roots: Iterable[int]) -> dict[int, int]:
    """CPU ticks of every live process under each root, by pid."""
    stats = _all_stats()
    return {pid: stats[pid].cpu_ticks for root in roots for pid in descendants(root, stats)}


def foreign_cores(window: float, own_roots: Sequence[int]) -> float:
    """Cores used during ``window`` seconds by processes outside our own server trees."""
    b0, o0 = system_busy_ticks(), sum(tree_cpu_ticks(own_roots).values())
    time.sleep(window)
    b1, o1 = system_busy_ticks(), sum(tree_cpu_ticks(own_roots).values())
    return max(0.0, ((b1 - b0) - (o1 - o0)) / HZ / window)


def wait_quiet(
    threshold: float, max_wait: float, own_roots: Sequence[int], window: float = 1.0
) -> tuple[float, float]:
    """Wait until other workloads use less than ``threshold`` cores; gives up after ``max_wait`` s.

    Returns (seconds waited, last measured foreign cores): on a shared box a measurement taken
    while something else burns CPU says little about the servers.
    """
    t0 = time.monotonic()
    while True:
        f = foreign_cores(window, own_roots)
        if f <= threshold or time.monotonic() - t0 >= max_wait:
            return round(time.monotonic() - t0, 1), round(f, 2)
        time.sleep(1.0)


@dataclass
class Launched:
    """A server process started in its own session, plus every descendant seen since."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    seen: dict[int, int] = field(default_factory=dict)  # pid -> start time

    @classmethod
    def start(
        cls, name: str, cmd: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: Path
    ) -> Launched:
        log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        launched = cls(name, proc, log_path, log)
        launched.refresh()
        return launched

    @property
    def pid(self) -> int:
        return self.proc.pid

    def refresh(self) -> list[int]:
        """Remember the current tree; returns its live pids."""
        stats = _all_stats()
        pids = descendants(self.pid, stats)
        for pid in pids:
            self.seen.setdefault(pid, stats[pid].start_time)
        return pids

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        self.log.flush()
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def _signal_seen(self, sig: int) -> list[int]:
        hit = []
        for pid, start in self.seen.items():
            st = read_stat(pid)
            if st is None or st.state == "Z" or st.start_time != start:
                continue  # gone, or the pid now belongs to someone else
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
                hit.append(pid)
        return hit

    def stop(self, grace: float = 10.0) -> dict[str, list[int]]:
        """SIGTERM the launched process, wait up to ``grace`` s, then TERM and KILL what is left."""
        report: dict[str, list[int]] = {}
        if self.alive():
            self.refresh()
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(grace)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(
            (st := read_stat(p)) is not None and st.state != "Z" and st.start_time == s
            for p, s in self.seen.items()
        ):
            time.sleep(0.1)
        report["terminated_late"] = self._signal_seen(signal.SIGTERM)
        if report["terminated_late"]:
            time.sleep(2.0)
            report["killed"] = self._signal_seen(signal.SIGKILL)
        if self.alive():
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.log.close()
        return report
