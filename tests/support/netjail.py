"""Run Python child processes that can reach one loopback port and nothing else.

`NetJail(port, directory)` writes a ``sitecustomize.py`` into ``directory``; a Python process with that
directory first on ``PYTHONPATH`` (and every Python process it starts, since they inherit it) installs an
audit hook (PEP 578) that refuses ``socket.getaddrinfo``, ``socket.connect`` and ``socket.sendto`` /
``sendmsg`` for any address but 127.0.0.1:<port>. Unix sockets stay allowed. A refusal is written to
stderr and to the jail's log file, then raised as ``PermissionError``, so an attempt to reach AWS (STS,
S3, telemetry) fails loudly even where a client library would retry and blur the error. Each jailed
process also writes its command line to the jail's "armed" log, so a test can tell the jail was on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_SITECUSTOMIZE = '''\
"""Network jail for tests (tests/support/netjail.py): only 127.0.0.1:{port} may be reached."""

import socket
import sys

_PORT = {port}
_LOG = {log!r}
_HOSTS = ("127.0.0.1",)
_INET = (socket.AF_INET, socket.AF_INET6)


def _refuse(what, target):
    line = f"netjail: refused {{what}} {{target!r}} (only 127.0.0.1:{{_PORT}} is reachable)"
    try:
        with open(_LOG, "a") as log:
            log.write(line + "\\n")
    except OSError:
        pass
    print(line, file=sys.stderr, flush=True)
    raise PermissionError(line)


def _allowed(host, port):
    try:
        return host in _HOSTS and int(port) == _PORT
    except (TypeError, ValueError):
        return False


def _hook(event, args):
    if event == "socket.getaddrinfo":
        host, port = args[0], args[1]
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        if not _allowed(host, port):
            _refuse("getaddrinfo", (host, port))
    elif event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args[0], args[-1]
        if getattr(sock, "family", None) not in _INET:
            return  # Unix sockets (and socketpairs) stay local by construction
        if event == "socket.sendto" and address is None:
            return  # a connected socket: its connect was already checked
        if not (isinstance(address, tuple) and len(address) >= 2 and _allowed(address[0], address[1])):
            _refuse(event.split(".", 1)[1], address)


sys.addaudithook(_hook)
try:
    with open({armed!r}, "a") as armed:
        armed.write(f"{{' '.join(sys.argv) or sys.executable}}\\n")
except OSError:
    pass
'''


@dataclass(frozen=True)
class NetJail:
    """A sitecustomize directory that confines Python processes to 127.0.0.1:``port``."""

    port: int
    directory: Path

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        self.armed_path.touch()
        source = _SITECUSTOMIZE.format(port=self.port, log=str(self.log_path), armed=str(self.armed_path))
        (self.directory / "sitecustomize.py").write_text(source)

    @property
    def log_path(self) -> Path:
        return self.directory / "refused.log"

    @property
    def armed_path(self) -> Path:
        return self.directory / "armed.log"

    def armed(self) -> list[str]:
        """The command line of every Python process that installed the jail (proof that it was on)."""
        return self.armed_path.read_text().splitlines()

    def refusals(self) -> list[str]:
        """Every refusal any jailed process made so far, one line each."""
        return self.log_path.read_text().splitlines()

    def environ(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` with the jail first on PYTHONPATH."""
        paths = [str(self.directory), *filter(None, [base.get("PYTHONPATH")])]
        return {**base, "PYTHONPATH": ":".join(paths)}
