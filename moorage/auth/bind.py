"""Where the server may listen without checking signatures: loopback only."""

from __future__ import annotations

import ipaddress
from pathlib import Path


class BindRefused(ValueError):
    """Listening on `host` without verification would let anyone on the network use the server."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped) and "localhost"; an empty host means every interface."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.partition("%")[0])
    except ValueError:
        return False  # any other name may resolve to a routable address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_bind(host: str, credentials_file: Path | str | None, insecure: bool) -> str | None:
    """None when binding `host` is safe; a warning to log when it is allowed only by `insecure`;
    BindRefused when it is not allowed at all."""
    if credentials_file is not None or is_loopback(host):
        return None
    if insecure:
        return (
            f"Listening on {host or 'every interface'} WITHOUT signature verification "
            "(--insecure-no-auth): anyone who can reach this port can deploy code and run it here."
        )
    raise BindRefused(
        f"Refusing to listen on {host or 'every interface'} without signature verification: anyone who "
        "can reach the port could deploy and run code. Pass --credentials FILE (a ~/.aws/credentials-style "
        "file of the keys to accept), bind to 127.0.0.1, or, on a network you trust, --insecure-no-auth."
    )
