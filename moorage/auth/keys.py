"""The access keys the server accepts, read from a file in `~/.aws/credentials` format.

```ini
[alice]
aws_access_key_id = AKIAALICE0000EXAMPLE
aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
aws_account_id = 111122223333   ; optional (botocore's own name; `account` works too)
```

Each section is one key; its name becomes the IAM user name that STS GetCallerIdentity reports.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

_ACCOUNT = re.compile(r"[0-9]{12}")


class KeyFileError(ValueError):
    """The credentials file cannot be used; the message says what to change."""


@dataclass(frozen=True)
class AccessKey:
    access_key: str
    secret: str
    account: str
    name: str  # the section it came from


class KeyRing(Mapping[str, AccessKey]):
    """Access key id → key. Immutable once built."""

    def __init__(self, keys: Mapping[str, AccessKey]) -> None:
        self._keys = dict(keys)

    def __getitem__(self, access_key: str) -> AccessKey:
        return self._keys[access_key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:  # never the secrets
        return f"KeyRing({sorted(self._keys)})"


def load_keyring(path: Path | str, default_account: str = "123456789012") -> KeyRing:
    """Read every section of `path`; a key without an account gets `default_account`."""
    path = Path(path)
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";", "#"))
    try:
        with open(path, encoding="utf-8") as f:
            parser.read_file(f)
    except FileNotFoundError:
        raise KeyFileError(
            f"credentials file {path} does not exist; create it in ~/.aws/credentials format "
            "(a [name] section with aws_access_key_id and aws_secret_access_key per key)"
        ) from None
    except (OSError, UnicodeDecodeError, configparser.Error) as err:
        raise KeyFileError(f"cannot read credentials file {path}: {err}") from None
    keys: dict[str, AccessKey] = {}
    for name in parser.sections():
        section = parser[name]
        access_key = section.get("aws_access_key_id", "").strip()
        secret = section.get("aws_secret_access_key", "").strip()
        if not access_key or not secret:
            missing = "aws_access_key_id" if not access_key else "aws_secret_access_key"
            raise KeyFileError(f"{path}: section [{name}] has no {missing}; every section must set both")
        account = (section.get("aws_account_id") or section.get("account") or default_account).strip()
        if not _ACCOUNT.fullmatch(account):
            raise KeyFileError(
                f"{path}: section [{name}] has account {account!r}; an AWS account id is exactly 12 digits"
            )
        if access_key in keys:
            raise KeyFileError(
                f"{path}: access key {access_key} appears in both [{keys[access_key].name}] and [{name}]"
            )
        keys[access_key] = AccessKey(access_key, secret, account, name)
    if not keys:
        raise KeyFileError(f"credentials file {path} defines no keys; add a [name] section")
    return KeyRing(keys)


def the_account(keys: KeyRing, path: Path | str) -> str:
    """The one account every key belongs to. A server serves one account: its ARNs, the S3 bucket
    owner and STS's answers all name it, so keys of different accounts are refused, not mixed."""
    accounts = sorted({key.account for key in keys.values()})
    if len(accounts) != 1:
        raise KeyFileError(
            f"{path}: the keys belong to several accounts ({', '.join(accounts)}); a Moorage server serves "
            "one account, so give every key the same aws_account_id (or run one server per account)"
        )
    return accounts[0]
