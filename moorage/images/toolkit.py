"""Images whose command only starts the SageMaker inference toolkit's model server.

Such an image serves ``code/inference.py`` through the toolkit (``start_model_server()``, the
multi-model-server or TorchServe front end that toolkit drives): the same contract as the built-in
runtime. It is served by the built-in runtime in the image's environment, and the Java model servers
and their archivers, which would never run, are not installed.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path

_SERVER_COMMANDS = frozenset({"multi-model-server", "mxnet-model-server", "torchserve"})
# Java front ends and their archive tools: pointless without the Java server they feed
SERVER_PACKAGES = frozenset(
    {
        "multi-model-server",
        "mxnet-model-server",
        "model-archiver",
        "torchserve",
        "torch-model-archiver",
        "torch-workflow-archiver",
    }
)
_STARTS_SERVER = re.compile(r"start_model_server\s*\(|\bmulti-model-server\s+--start|\btorchserve\s+--start")
_SHELLS = frozenset({"sh", "bash", "dash"})
_PYTHON = re.compile(r"python(\d(\.\d+)?)?$")
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def starts_toolkit_server(command: Sequence[str], depth: int = 0) -> bool:
    """True when ``command`` (paths already local) does nothing but start the toolkit's model server."""
    if not command or depth > 3:
        return False
    program = os.path.basename(command[0])
    if program in _SERVER_COMMANDS:
        return True
    if program in _SHELLS and len(command) >= 3 and command[1] == "-c":
        try:
            return starts_toolkit_server(shlex.split(command[2]), depth + 1)
        except ValueError:
            return False
    if _PYTHON.match(program):
        rest = list(command[1:])
        if "-c" in rest:
            code = rest[rest.index("-c") + 1] if rest.index("-c") + 1 < len(rest) else ""
            return bool(_STARTS_SERVER.search(code))
        scripts = [word for word in rest if not word.startswith("-")]
        return bool(scripts) and _script_starts_server(scripts[0])
    return _script_starts_server(command[0])


def _script_starts_server(path: str) -> bool:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return bool(_STARTS_SERVER.search(text))


def drop_server_packages(requirements: Iterable[str]) -> tuple[list[str], list[str]]:
    """(kept, dropped): the requirements without the Java model servers and their archivers."""
    kept: list[str] = []
    dropped: list[str] = []
    for requirement in requirements:
        match = _NAME.match(requirement)
        name = match.group(1).lower().replace("_", "-") if match else ""
        (dropped if name in SERVER_PACKAGES else kept).append(requirement)
    return kept, dropped
