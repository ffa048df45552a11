"""Read the part of a Dockerfile that describes a Python environment, and refuse the rest.

Understood: ``FROM python:X.Y[-variant]`` (or a SageMaker framework image), ``RUN pip install …``
(packages, ``-r file``; ``--no-cache-dir``, ``-U``/``--upgrade``, ``--quiet``), ``ENV``, ``ARG`` with
defaults, ``COPY``/``ADD`` of local files, ``ENTRYPOINT``/``CMD`` (exec and shell forms), ``WORKDIR``,
``EXPOSE``, ``LABEL``, comments and line continuations. Anything else (system packages, other ``RUN``
commands, multi-stage builds, …) changes the image in ways this reading cannot reproduce, so it is refused
with the line and what to do instead; nothing is guessed.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from moorage.images.frameworks import FrameworkImage, parse_framework_image

_PYTHON_BASE = re.compile(
    r"^(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)/)?(?:library/)?python"
    r":(?P<version>3\.\d+)(?:\.\d+)?(?:-[a-z0-9.-]+)?$"
)
_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_]\w*)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))")
_PIP_FLAGS_IGNORED = frozenset(
    {"--no-cache-dir", "--no-cache", "-U", "--upgrade", "-q", "--quiet", "-qq", "--disable-pip-version-check"}
)
_PIP_COMMANDS = (["pip", "install"], ["pip3", "install"])
_IGNORED_INSTRUCTIONS = frozenset({"EXPOSE", "LABEL", "MAINTAINER"})
_ALTERNATIVE = "register the image with --python X.Y --requirements FILE [--command …] instead"


class DockerfileError(Exception):
    """A Dockerfile this server cannot reproduce; str() names the line and what to do."""


@dataclass
class DockerfileImage:
    """What a Dockerfile says about the Python environment and the command of its image."""

    python: str | None = None  # "3.11" from FROM python:3.11-slim; None for a framework base image
    base: FrameworkImage | None = None  # FROM a SageMaker framework image
    requirements: list[str] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    workdir: str = "/"
    files: dict[str, Path] = field(default_factory=dict)  # path in the image → file or dir on this machine

    def local_path(self, image_path: str) -> Path | None:
        """Where a path in the image comes from on this machine (a COPY/ADD destination), if anywhere."""
        path = posixpath.normpath(posixpath.join(self.workdir, image_path))
        for destination, source in sorted(self.files.items(), key=lambda item: -len(item[0])):
            if path == destination:
                return source
            if path.startswith(destination.rstrip("/") + "/") and source.is_dir():
                return source / path[len(destination.rstrip("/")) + 1 :]
        return None

    def command(self) -> list[str] | None:
        """What SageMaker runs (``docker run IMAGE serve``), with copied files at their local paths."""
        if self.entrypoint:
            words = [*self.entrypoint, "serve"]
        elif self.cmd:
            words = [*self.cmd, "serve"]
        else:
            return None
        return [self._localise(word) for word in words]

    def _localise(self, word: str) -> str:
        if word.startswith("/") or "/" in word:
            local = self.local_path(word)
            if local is not None:
                return str(local)
        return word


def parse_dockerfile(path: Path, build_args: dict[str, str] | None = None) -> DockerfileImage:
    """Read ``path``; its directory is the build context. Raises DockerfileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DockerfileError(f"Cannot read {path}: {exc}") from None
    reader = _Reader(path, dict(build_args or {}))
    for number, line in _instructions(text):
        reader.line = number
        reader.read(line)
    if not reader.seen_from:
        raise DockerfileError(f"{path}: no FROM line; a Dockerfile starts FROM python:X.Y")
    return reader.image


def _instructions(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, instruction) with continuations joined and comments dropped."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and pending):
            continue  # comments (and blank lines) inside a continued instruction are skipped too
        if not stripped:
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        yield start, " ".join(part for part in pending if part)
        pending = []
    if pending:
        yield start, " ".join(part for part in pending if part)


class _Reader:
    def __init__(self, path: Path, args: dict[str, str]) -> None:
        self.path = path
        self.context = path.parent
        self.args = args
        self.line = 0
        self.seen_from = False
        self.directories = {"/"}  # known to be directories in the image (WORKDIRs)
        self.image = DockerfileImage()
        self.handlers: dict[str, Callable[[str], None]] = {
            "FROM": self.do_from, "ENV": self.do_env, "WORKDIR": self.do_workdir, "RUN": self.do_run,
            "ENTRYPOINT": self.do_entrypoint, "CMD": self.do_cmd,
            "COPY": lambda rest: self.copy("COPY", rest), "ADD": lambda rest: self.copy("ADD", rest),
        }  # fmt: skip

    def fail(self, message: str) -> DockerfileError:
        return DockerfileError(f"{self.path}:{self.line}: {message}")

    def expand(self, text: str) -> str:
        variables = {**self.args, **self.image.environment}

        def value(match: re.Match[str]) -> str:
            name = match["braced"] or match["bare"]
            found = variables.get(name)
            if found:
                return found
            return match["default"] or ""

        return _VARIABLE.sub(value, text)

    def read(self, line: str) -> None:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "ARG":
            self.arg(rest)
            return
        if not self.seen_from and keyword != "FROM":
            raise self.fail(f"{keyword} before FROM; the first instruction must be FROM python:X.Y")
        if keyword in _IGNORED_INSTRUCTIONS:
            return
        handler = self.handlers.get(keyword)
        if handler is None:
            raise self.fail(
                f"{keyword} is not supported here (it changes the image in a way this server cannot "
                f"reproduce without Docker); {_ALTERNATIVE}"
            )
        handler(rest)

    def arg(self, rest: str) -> None:
        name, sep, default = rest.partition("=")
        name = name.strip()
        if name not in self.args:
            self.args[name] = self.expand(_unquote(default.strip())) if sep else ""

    def do_from(self, rest: str) -> None:
        if self.seen_from:
            raise self.fail(f"a second FROM (multi-stage build) is not supported; {_ALTERNATIVE}")
        words = [w for w in self.expand(rest).split() if not w.startswith("--platform")]
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
            raise self.fail(f"cannot read FROM {rest}")
        self.seen_from = True
        base = words[0]
        python = _PYTHON_BASE.match(base)
        if python is not None:
            self.image.python = python["version"]
            return
        framework = parse_framework_image(base)
        if framework is not None:
            self.image.base = framework
            self.image.requirements.extend(framework.requirements)
            return
        raise self.fail(
            f"FROM {base}: only python:X.Y[-variant] images (or SageMaker framework images) can be "
            f"reproduced without Docker; {_ALTERNATIVE}"
        )

    def do_env(self, rest: str) -> None:
        rest = rest.strip()
        first = rest.split(None, 1)[0] if rest else ""
        if "=" not in first:  # legacy ENV KEY value with spaces
            name, _, value = rest.partition(" ")
            self.image.environment[name] = self.expand(value.strip())
            return
        try:
            words = shlex.split(rest)
        except ValueError as exc:
            raise self.fail(f"cannot read ENV {rest}: {exc}") from None
        for word in words:
            name, sep, value = word.partition("=")
            if not sep:
                raise self.fail(f"ENV {rest}: expected KEY=VALUE, got {word!r}")
            self.image.environment[name] = self.expand(value)

    def do_workdir(self, rest: str) -> None:
        directory = self.expand(_unquote(rest))
        self.image.workdir = posixpath.normpath(posixpath.join(self.image.workdir, directory))
        self.directories.add(self.image.workdir)

    def do_entrypoint(self, rest: str) -> None:
        self.image.entrypoint = self.exec_or_shell("ENTRYPOINT", rest)
        self.image.cmd = None  # Docker resets CMD when ENTRYPOINT is set

    def do_cmd(self, rest: str) -> None:
        self.image.cmd = self.exec_or_shell("CMD", rest)

    def exec_or_shell(self, keyword: str, rest: str) -> list[str]:
        if rest.startswith("["):
            try:
                words = json.loads(rest)
            except ValueError:
                words = None
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise self.fail(f"{keyword} {rest}: the exec form must be a JSON list of strings")
            return [self.expand(w) for w in words]
        return ["/bin/sh", "-c", self.expand(rest)]

    def copy(self, keyword: str, rest: str) -> None:
        words = self.exec_or_shell(keyword, rest) if rest.startswith("[") else shlex.split(self.expand(rest))
        flags = [w for w in words if w.startswith("--")]
        words = [w for w in words if not w.startswith("--")]
        if any(flag.startswith("--from") for flag in flags):
            raise self.fail(f"{keyword} --from (multi-stage build) is not supported; {_ALTERNATIVE}")
        if len(words) < 2:
            raise self.fail(f"{keyword} {rest}: expected SOURCE… DESTINATION")
        *sources, destination = words
        for source in sources:
            if "://" in source:
                raise self.fail(f"{keyword} of a URL ({source}) is not supported; download it yourself")
            local = (self.context / source).resolve()
            if not local.exists():
                raise self.fail(f"{keyword} {source}: no such file next to the Dockerfile ({local})")
            if keyword == "ADD" and local.is_file() and re.search(r"\.(tar|tgz|tar\.\w+)$", local.name):
                raise self.fail(f"ADD of an archive ({source}) unpacks it, which is not supported; unpack it")
            target = posixpath.normpath(posixpath.join(self.image.workdir, destination))
            into_dir = destination.endswith("/") or len(sources) > 1 or target in self.directories
            if local.is_file() and into_dir:
                target = posixpath.join(target, local.name)
            self.image.files[target] = local

    def do_run(self, rest: str) -> None:
        if rest.startswith("["):
            commands = [self.exec_or_shell("RUN", rest)]
        else:
            text = self.expand(rest)
            if re.search(r"[;|`<>]|\$\(|\|\|", text):
                raise self.fail(f"RUN {rest}: only `pip install …` commands joined by && are understood")
            try:
                commands = [shlex.split(part) for part in text.split("&&")]
            except ValueError as exc:
                raise self.fail(f"cannot read RUN {rest}: {exc}") from None
        for words in commands:
            self.pip_install(words, rest)

    def pip_install(self, words: list[str], rest: str) -> None:
        args = _pip_arguments(words)
        if args is None:
            raise self.fail(
                f"RUN {rest}: only `pip install …` is understood here ({' '.join(words[:3])} is not); "
                f"{_ALTERNATIVE}"
            )
        iterator = iter(args)
        for word in iterator:
            if word in _PIP_FLAGS_IGNORED:
                continue
            if word in ("-r", "--requirement"):
                self.requirements_file(next(iterator, ""))
            elif word.startswith("--requirement="):
                self.requirements_file(word.split("=", 1)[1])
            elif word.startswith("-"):
                raise self.fail(
                    f"RUN {rest}: pip option {word} is not supported (understood: package names, -r FILE, "
                    "--no-cache-dir, -U/--upgrade, --quiet)"
                )
            elif word != "pip":  # upgrading pip itself means nothing: environments are built with uv
                self.image.requirements.append(word)

    def requirements_file(self, name: str) -> None:
        if not name:
            raise self.fail("pip install -r needs a file name")
        local = self.image.local_path(name)
        if local is None or not local.is_file():
            local = self.context / name
        try:
            lines = local.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise self.fail(f"pip install -r {name}: cannot read {local}: {exc}") from None
        for raw in lines:
            requirement = raw.split(" #", 1)[0].strip()
            if not requirement or requirement.startswith("#"):
                continue
            if requirement.startswith("-"):
                raise self.fail(f"{local}: {requirement!r}: options in requirements files are not supported")
            self.image.requirements.append(requirement)


def _pip_arguments(words: list[str]) -> list[str] | None:
    """The arguments after ``pip install`` (also ``python -m pip install``), or None if it is not one."""
    for prefix in _PIP_COMMANDS:
        if words[:2] == prefix:
            return words[2:]
    python = len(words) >= 4 and re.fullmatch(r"python(3(\.\d+)?)?", words[0]) is not None
    if python and words[1:4] == ["-m", "pip", "install"]:
        return words[4:]
    return None


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text
