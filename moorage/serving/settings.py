"""Instance settings: the command line and the container environment, read once at start-up.

Nothing here imports numpy or user code: `limit_threads` must run before either is imported.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from moorage.serving.errors import StartupFailure

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
DEFAULT_PROGRAM = "inference.py"
DEFAULT_ACCEPT = "application/json"
# Asynchronous inference accepts payloads up to 1 GB; the front door enforces the tighter per-API limits.
DEFAULT_MAX_BODY_BYTES = 1 << 30
# Set by the server when SAGEMAKER_SUBMIT_DIRECTORY names an archive: where it was unpacked.
CODE_DIR_VARIABLE = "MOORAGE_CODE_DIR"


def limit_threads(environ: MutableMapping[str, str]) -> None:
    """One BLAS/OpenMP thread per worker unless the user chose otherwise, as multi-model-server does.

    Each worker already is one of W processes; letting every numpy call start a thread pool per
    core oversubscribes the machine.
    """
    for name in THREAD_VARIABLES:
        environ.setdefault(name, "1")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the instance needs to know, validated."""

    model_dir: Path
    socket_dir: Path
    workers: int
    tcp_host: str | None  # workers listen on TCP at this address (an instance on another machine)
    code_dir: Path
    program: str
    default_accept: str
    max_body_bytes: int
    instance_id: str | None
    log_level: int

    @property
    def program_file(self) -> Path:
        return self.code_dir / self.program


@dataclass(frozen=True, slots=True)
class Arguments:
    model_dir: Path
    socket_dir: Path
    workers: int | None
    tcp_host: str | None = None


def parse_arguments(argv: Sequence[str] | None = None) -> Arguments:
    parser = argparse.ArgumentParser(
        prog="python -m moorage.serving",
        description="Serve one SageMaker model instance on Unix sockets (or TCP, with --tcp-host).",
    )
    parser.add_argument("--model-dir", required=True, type=Path, help="the unpacked model artifact")
    parser.add_argument("--socket-dir", required=True, type=Path, help="where w<i>.sock and instance.json go")
    parser.add_argument("--workers", type=_positive_int, help="overrides SAGEMAKER_MODEL_SERVER_WORKERS")
    parser.add_argument(
        "--tcp-host", metavar="ADDRESS", help="workers listen on TCP at ADDRESS, each on a port the OS picks"
    )
    ns = parser.parse_args(argv)
    return Arguments(ns.model_dir.absolute(), ns.socket_dir.absolute(), ns.workers, ns.tcp_host)


def load_settings(args: Arguments, environ: Mapping[str, str]) -> Settings:
    """Raises StartupFailure with a reason the user can act on when a variable is unusable."""
    return Settings(
        model_dir=args.model_dir,
        socket_dir=args.socket_dir,
        tcp_host=args.tcp_host,
        workers=args.workers or _workers(environ),
        code_dir=_code_dir(args.model_dir, environ),
        program=_program(environ),
        default_accept=environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or DEFAULT_ACCEPT,
        max_body_bytes=_max_body_bytes(environ),
        instance_id=environ.get("MOORAGE_INSTANCE_ID") or None,
        log_level=_log_level(environ.get("SAGEMAKER_CONTAINER_LOG_LEVEL", "")),
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _workers(environ: Mapping[str, str]) -> int:
    text = environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "").strip()
    if not text:
        return available_cpus()
    try:
        return _positive_int(text)
    except (ValueError, argparse.ArgumentTypeError):
        raise StartupFailure(
            f"SAGEMAKER_MODEL_SERVER_WORKERS={text!r} is not a whole number of at least 1"
        ) from None


def available_cpus() -> int:
    """The CPUs this process may run on (a taskset or cpuset can be smaller than the machine)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _code_dir(model_dir: Path, environ: Mapping[str, str]) -> Path:
    fetched = environ.get(CODE_DIR_VARIABLE, "")
    if fetched:
        return Path(fetched).absolute()
    submit = environ.get("SAGEMAKER_SUBMIT_DIRECTORY", "")
    if submit.startswith("file://"):
        submit = submit[len("file://") :]
    if submit and Path(submit).is_dir():
        return Path(submit).absolute()
    return model_dir / "code"


def _program(environ: Mapping[str, str]) -> str:
    program = environ.get("SAGEMAKER_PROGRAM", "").strip() or DEFAULT_PROGRAM
    stem = program.removesuffix(".py")
    if not stem.isidentifier():
        raise StartupFailure(
            f"SAGEMAKER_PROGRAM={program!r} is not a Python file name in the code directory "
            "(expected something like 'inference.py')"
        )
    return stem + ".py"


def _max_body_bytes(environ: Mapping[str, str]) -> int:
    text = environ.get("SAGEMAKER_MAX_PAYLOAD_IN_MB", "").strip()
    if not text:
        return DEFAULT_MAX_BODY_BYTES
    try:
        megabytes = int(text)
    except ValueError:
        raise StartupFailure(f"SAGEMAKER_MAX_PAYLOAD_IN_MB={text!r} is not a whole number") from None
    return max(1, megabytes) * 1024 * 1024


def _log_level(text: str) -> int:
    text = text.strip()
    if text.isdigit():
        return int(text)
    level = logging.getLevelName(text.upper()) if text else logging.INFO
    return level if isinstance(level, int) else logging.INFO
