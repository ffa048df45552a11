"""`moorage serve` and `moorage logs`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_STATE_DIR = ".moorage"


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from moorage.app import serve
    from moorage.config import Settings

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings(state_dir=Path(args.state_dir), host=args.host, port=args.port)
    banner = f"Moorage: SageMaker API on http://{args.host}:{args.port} (state in {settings.state_dir})"
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings, ready=banner))
    else:
        uvloop.run(serve(settings, ready=banner))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from moorage.logs import EndpointLogs

    path = EndpointLogs(Path(args.state_dir) / "logs").path(args.endpoint)
    if not path.exists() and not args.follow:
        print(f"No log for endpoint {args.endpoint!r} in {path.parent}.", file=sys.stderr)
        return 1
    while not path.exists():
        time.sleep(0.2)
    with open(path, encoding="utf-8", errors="replace") as log:
        sys.stdout.write(log.read())
        sys.stdout.flush()
        while args.follow:
            line = log.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moorage", description="Self-hosted SageMaker Hosting.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server (control plane and runtime on one port)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7070)
    serve.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)
    logs = commands.add_parser("logs", help="show an endpoint's log (instances' output and server events)")
    logs.add_argument("endpoint")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    logs.set_defaults(func=_logs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
