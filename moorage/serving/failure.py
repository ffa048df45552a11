"""Start-up failure reasons: one line that names the hook, the exception and the user's file and line."""

from __future__ import annotations

import traceback
from pathlib import Path

from moorage.serving.errors import StartupFailure, message_of

MAX_REASON_CHARS = 900


def describe(exc: BaseException, action: str, code_dir: Path) -> str:
    """E.g. "model_fn raised KeyError: 'x' (inference.py line 12)"."""
    if isinstance(exc, StartupFailure):
        return one_line(exc.reason)
    text = f"{action} raised {type(exc).__name__}"
    detail = exc.msg if isinstance(exc, SyntaxError) and exc.msg else message_of(exc)
    if detail != type(exc).__name__:
        text += f": {detail}"
    where = _location(exc, code_dir)
    if where:
        text += f" ({where})"
    return one_line(text)


def one_line(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_REASON_CHARS:
        text = text[: MAX_REASON_CHARS - 3] + "..."
    return text


def _location(exc: BaseException, code_dir: Path) -> str | None:
    """The innermost place in the user's code directory, which is where a user can act."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f"{_relative(exc.filename, code_dir)} line {exc.lineno}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if _inside(frame.filename, code_dir):
            return f"{_relative(frame.filename, code_dir)} line {frame.lineno}"
    return None


def _inside(filename: str, code_dir: Path) -> bool:
    try:
        Path(filename).resolve().relative_to(code_dir.resolve())
    except (ValueError, OSError):
        return False
    return True


def _relative(filename: str, code_dir: Path) -> str:
    try:
        return str(Path(filename).resolve().relative_to(code_dir.resolve()))
    except (ValueError, OSError):
        return filename
