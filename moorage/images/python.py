"""Which Python an image's environment is built with: the runtime's own, or another found by uv."""

from __future__ import annotations

import os
import subprocess
import sys

RUNTIME_MINIMUM = (3, 11)  # the built-in runtime needs 3.11 or newer


def runtime_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def version_tuple(version: str) -> tuple[int, int] | None:
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)


def find_python(version: str) -> tuple[str | None, str]:
    """(interpreter path or None, why not) for Python ``version`` (X.Y); never downloads one."""
    if version == runtime_version():
        return sys.executable, ""
    try:
        from uv import find_uv_bin

        uv = str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        return None, "the uv executable was not found"
    env = {key: value for key, value in os.environ.items() if key != "VIRTUAL_ENV"}
    env.update({"NO_COLOR": "1", "UV_PYTHON_DOWNLOADS": "never"})
    try:
        found = subprocess.run(
            [uv, "python", "find", "--no-python-downloads", version],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"uv python find failed: {exc}"
    path = found.stdout.strip().splitlines()[-1:] if found.returncode == 0 else []
    if path:
        return path[0], ""
    reason = " ".join(found.stderr.split())[:300] or f"uv exit {found.returncode}"
    return None, f"uv found no Python {version} on this machine ({reason})"
