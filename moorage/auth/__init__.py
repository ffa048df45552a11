"""Request authentication: SigV4 verification against a keys file, and the safe-bind rule.

- keys.py    the accepted access keys (`~/.aws/credentials` format) → KeyRing
- sigv4.py   SigV4Verifier.verify(method, target, headers, body) → Caller, or AuthFailure
- errors.py  an AuthFailure as each API family's error response
- bind.py    check_bind: without keys, listen on loopback only (docs/security.md)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from moorage.auth.bind import BindRefused, check_bind, is_loopback
from moorage.auth.keys import AccessKey, KeyFileError, KeyRing, load_keyring
from moorage.auth.sigv4 import AuthFailure, Caller, SigV4Verifier

if TYPE_CHECKING:
    from moorage.config import Settings

__all__ = [
    "AccessKey",
    "AuthFailure",
    "BindRefused",
    "Caller",
    "KeyFileError",
    "KeyRing",
    "SigV4Verifier",
    "build_verifier",
    "check_bind",
    "is_loopback",
    "load_keyring",
]


def build_verifier(settings: Settings) -> SigV4Verifier | None:
    """The verifier for `settings.credentials_file`, or None when signatures are not checked."""
    if settings.credentials_file is None:
        return None
    return SigV4Verifier(load_keyring(settings.credentials_file, settings.account_id))
