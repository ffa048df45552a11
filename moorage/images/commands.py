"""`moorage image add` and `moorage image ls`: registrations written to the store in --state-dir."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from moorage.images.dockerfile import DockerfileError
from moorage.images.registry import ImageError, ImageRegistry, from_dockerfile, from_requirements

log = logging.getLogger("moorage.images")


def add_arguments(commands: argparse._SubParsersAction[argparse.ArgumentParser], state_dir: str) -> None:
    image = commands.add_parser("image", help="register what an image URI stands for (no Docker needed)")
    actions = image.add_subparsers(dest="image_command", required=True)
    add = actions.add_parser("add", help="register an image from a Dockerfile or a Python version + packages")
    add.add_argument("uri", help="the image URI models name in PrimaryContainer.Image")
    add.add_argument("--from-dockerfile", metavar="FILE", help="read FROM python:X.Y, pip installs, ENV, …")
    add.add_argument("--python", metavar="X.Y", help="the Python version (overrides the Dockerfile's)")
    add.add_argument("--requirements", metavar="FILE", help="packages to install (pip requirements file)")
    add.add_argument("--command", metavar="CMD", help="what `docker run IMAGE serve` runs (one string)")
    add.add_argument("--env", metavar="K=V", action="append", default=[], help="environment (repeatable)")
    add.add_argument("--state-dir", default=state_dir)
    add.set_defaults(func=add_image)
    ls = actions.add_parser("ls", help="list registered images")
    ls.add_argument("--state-dir", default=state_dir)
    ls.set_defaults(func=list_images)
    rm = actions.add_parser("rm", help="forget a registered image")
    rm.add_argument("uri")
    rm.add_argument("--state-dir", default=state_dir)
    rm.set_defaults(func=remove_image)


def _registry(state_dir: str) -> ImageRegistry:
    """The store `moorage serve` uses: MOORAGE_DATABASE_URL's database if set, else the state dir's."""
    from moorage.store import open_store

    return ImageRegistry(open_store(Path(state_dir), os.environ.get("MOORAGE_DATABASE_URL") or None))


def add_image(args: argparse.Namespace) -> int:
    environment: dict[str, str] = {}
    for pair in args.env:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            print(f"moorage image add: --env {pair!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        environment[key] = value
    try:
        if args.from_dockerfile:
            if args.requirements:
                raise ImageError("--requirements and --from-dockerfile exclude each other")
            image = from_dockerfile(
                args.uri, Path(args.from_dockerfile), args.python, args.command, environment
            )
        elif args.python:
            requirements = Path(args.requirements) if args.requirements else None
            image = from_requirements(args.uri, args.python, requirements, args.command, environment)
        else:
            raise ImageError("give --from-dockerfile FILE, or --python X.Y [--requirements FILE]")
    except (ImageError, DockerfileError) as refusal:
        print(f"moorage image add: {refusal}", file=sys.stderr)
        return 2
    _registry(args.state_dir).add(image)
    if image.python_note:
        log.warning("%s: %s", image.uri, image.python_note)
        print(f"Note: {image.python_note}")
    serves = "its own server" if image.own_server else "the built-in runtime"
    count = len(image.requirements)
    print(f"Registered {image.uri}: Python {image.python}, {count} packages, served by {serves}")
    if image.dropped:
        print(f"Left out (model servers the built-in runtime replaces): {', '.join(image.dropped)}")
    return 0


def list_images(args: argparse.Namespace) -> int:
    images = _registry(args.state_dir).list()
    if not images:
        print(f"No images registered in {args.state_dir}.")
        return 0
    rows = [("URI", "PYTHON", "PACKAGES", "COMMAND", "REGISTERED")]
    for image in images:
        command = " ".join(image.command) if image.command else "-"
        if image.command and not image.own_server:
            command += " (built-in runtime)"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(image.registered_at))
        rows.append((image.uri, image.python, str(len(image.requirements)), command, when))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]))
    return 0


def remove_image(args: argparse.Namespace) -> int:
    if _registry(args.state_dir).remove(args.uri):
        print(f"Removed {args.uri}")
        return 0
    print(f"moorage image rm: {args.uri} is not registered in {args.state_dir}", file=sys.stderr)
    return 1
