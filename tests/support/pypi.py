"""A marker for tests whose server installs packages from PyPI (framework images, image environments)."""

from __future__ import annotations

import socket

import pytest


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
    except OSError:
        return False
    return True


needs_pypi = pytest.mark.skipif(
    not _pypi_reachable(), reason="PyPI (pypi.org:443) is unreachable: these images install packages from it"
)
