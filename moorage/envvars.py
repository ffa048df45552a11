"""Reading numeric MOORAGE_* settings from an environment mapping: unset or empty is the default, anything
else must parse, and a value that does not says which variable and what it wanted."""

from __future__ import annotations

from collections.abc import Mapping


def seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    value = environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {value!r}") from None


def whole_number(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from None
