"""A real two-node Ray cluster on this machine, on loopback only, for the Ray provider's tests.

Ray puts each node on the machine's network address unless told otherwise, so each node gets its own
loopback address (head 127.0.0.2, second node 127.0.0.3) and its own temp dir, and every port it opens
is pinned to one picked here. Ray's dashboard process asks the cloud metadata address even with usage
stats off; giving it a host it cannot bind keeps it from starting at all. A node is stopped on its own
by signalling the processes whose command lines name its temp dir (and the raylet's workers), which
is how a machine dropping out of the cluster looks to the rest."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

RAY = Path(sys.executable).parent / "ray"
HEAD_IP = "127.0.0.2"
SECOND_IP = "127.0.0.3"
# small on purpose: the machine has 2 cores; MOORAGE_INSTANCE_TYPES in the tests sizes instances to fit
NODE_CPUS = 2
NODE_MEMORY = 2 * 1024**3
OBJECT_STORE = 128 * 1024**2
# instance sizes for servers on these small nodes: four ml.m5.large fit on one; ml.m5.4xlarge never fits
INSTANCE_TYPES = {
    "ml.m5.large": {"cpus": 0.5, "memory_gib": 0.25},
    "ml.m5.4xlarge": {"cpus": 16, "memory_gib": 64},
}
ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",
    # a node that stops answering is declared dead in ~3 s rather than ~15 s
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def _free_ports(host: str, count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class RayNode:
    name: str
    ip: str
    temp_dir: Path
    resources: str
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.temp_dir.parent / f"{self.name}.start.log"

    def start(self, head_address: str | None) -> None:
        (
            node_manager,
            object_manager,
            runtime_env,
            agent_grpc,
            agent_http,
            metrics,
            gcs,
            dashboard,
        ) = _free_ports(self.ip, 8)
        workers = _worker_port_range(
            [node_manager, object_manager, runtime_env, agent_grpc, agent_http, metrics, gcs, dashboard],
        )
        command = [
            str(RAY),
            "start",
            "--node-ip-address",
            self.ip,
            "--temp-dir",
            str(self.temp_dir),
            "--node-name",
            self.name,
            "--disable-usage-stats",
            "--num-cpus",
            str(NODE_CPUS),
            "--memory",
            str(NODE_MEMORY),
            "--object-store-memory",
            str(OBJECT_STORE),
            "--resources",
            self.resources,
            "--node-manager-port",
            str(node_manager),
            "--object-manager-port",
            str(object_manager),
            "--runtime-env-agent-port",
            str(runtime_env),
            "--dashboard-agent-grpc-port",
            str(agent_grpc),
            "--dashboard-agent-listen-port",
            str(agent_http),
            "--metrics-export-port",
            str(metrics),
            "--min-worker-port",
            str(workers[0]),
            "--max-worker-port",
            str(workers[1]),
        ]
        if head_address is None:
            self.gcs_port = gcs
            command += [
                "--head",
                "--port",
                str(gcs),
                "--include-dashboard=false",
                # unbindable: the dashboard process (which would call the cloud metadata address) never runs
                "--dashboard-host",
                "0.0.0.1",
                "--dashboard-port",
                str(dashboard),
            ]
        else:
            command += ["--address", head_address]
        with self.log.open("ab") as log:
            done = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **ENVIRONMENT}, timeout=120
            )
        if done.returncode != 0:
            raise RuntimeError(f"ray start ({self.name}) failed:\n{self.log.read_text(errors='replace')}")

    def pids(self) -> list[int]:
        """Every process of this node: those naming its temp dir, and the raylet's workers."""
        found: set[int] = set()
        marker = f"{self.temp_dir}/session_".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if marker in cmdline:
                found.add(int(entry.name))
                if comm == "raylet":
                    found.update(_children(int(entry.name)))
        return sorted(found)

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 10) -> None:
        """SIGKILL by default: the node drops out as a crashed machine would, and at once."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class RayCluster:
    head: RayNode
    second: RayNode

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.head.gcs_port}"

    def server_args(self) -> tuple[str, ...]:
        """`moorage serve` flags that place instances on this cluster (and no S3 on the port)."""
        return ("--no-s3", "--compute", "ray", "--ray-address", self.address, "--ray-node-address", HEAD_IP)

    def server_env(self, **settings: str) -> dict[str, str]:
        """A server's environment: INSTANCE_TYPES, and `settings` (MOORAGE_* variables)."""
        return {"MOORAGE_INSTANCE_TYPES": json.dumps(INSTANCE_TYPES), **settings}

    def start_second(self) -> None:
        _started(lambda: self.second.start(self.address), self.second)

    def stop(self) -> None:
        self.second.stop()
        self.head.stop()


def _worker_port_range(taken: list[int]) -> tuple[int, int]:
    """200 ports for the node's workers, below the ephemeral range (where the ports picked for the node's
    other parts live) and clear of them; Ray refuses a range that holds one of its other ports."""
    while True:
        start = random.randrange(20000, 30000 - 200)
        if not any(start <= port <= start + 200 for port in taken):
            return start, start + 200


def _children(pid: int) -> set[int]:
    children: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                children.update(int(c) for c in (task / "children").read_text().split())
    return children


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _started(start: Callable[[], None], node: RayNode, attempts: int = 2) -> None:
    """`ray start` now and then fails on a busy machine; what it left behind is stopped and it runs again."""
    for attempt in range(attempts):
        try:
            start()
            return
        except (RuntimeError, subprocess.TimeoutExpired):
            node.stop()
            if attempt == attempts - 1:
                raise


@contextlib.contextmanager
def ray_cluster() -> Iterator[RayCluster]:
    """Head on 127.0.0.2 and a second node on 127.0.0.3 (custom resources node_a / node_b)."""
    root = Path(tempfile.mkdtemp(prefix="mray-", dir="/tmp"))  # short: Ray's Unix socket paths
    cluster = RayCluster(
        head=RayNode("head", HEAD_IP, root / "a", '{"node_a": 1}'),
        second=RayNode("second", SECOND_IP, root / "b", '{"node_b": 1}'),
    )
    try:
        _started(lambda: cluster.head.start(None), cluster.head)
        cluster.start_second()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
