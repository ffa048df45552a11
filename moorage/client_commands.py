"""`moorage ls`, `moorage describe` and `moorage invoke`: a terminal view of a running server.

They talk to the server only through its public SageMaker API with boto3, exactly as any user's code
does, so they work the same against a server on another machine and never read its state directory.
boto3 is imported inside the commands: `moorage serve` does not need it at start-up."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from moorage.api.json_protocol import INSTANCES_MEMBER

DEFAULT_ENDPOINT_URL = "http://127.0.0.1:7070"
# Requests are not signature-checked, but boto3 refuses to send unsigned ones; these stand in on a
# machine with no AWS configuration at all.
PLACEHOLDER_REGION = "us-east-1"
PLACEHOLDER_KEY = "moorage"
# Only credentials read from local configuration: the other providers (IMDS, containers, STS, SSO,
# credential processes) would reach out to AWS or run programs just to sign a request to this server.
_STATIC_CREDENTIALS = frozenset(
    {"env", "shared-credentials-file", "config-file", "ec2-credentials-file", "boto-config"}
)
CONNECT_TIMEOUT_S = 3
CONTROL_READ_TIMEOUT_S = 60
INVOKE_READ_TIMEOUT_S = 75  # beyond the server's own 60 s invocation budget, so its answer arrives
_DESCRIBE_THREADS = 8
_ARROW = "→"


class CommandError(Exception):
    """A problem the user can fix; printed as one line, without a traceback."""


@dataclass
class Server:
    """The Moorage server at one URL, reached with boto3 clients that fail fast instead of retrying."""

    url: str

    def client(self, service: str, read_timeout: float = CONTROL_READ_TIMEOUT_S) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=read_timeout,
            retries={"total_max_attempts": 1, "mode": "standard"},
        )
        try:
            return boto3.Session(botocore_session=_botocore_session()).client(
                service, endpoint_url=self.url, config=config
            )
        except ValueError as err:  # botocore's "Invalid endpoint: …"
            raise CommandError(f"{self.url!r} is not a server URL (e.g. {DEFAULT_ENDPOINT_URL}).") from err


def resolve_endpoint_url(given: str | None) -> str:
    """--endpoint-url, else AWS_ENDPOINT_URL (as boto3 itself would use), else the local default."""
    return given or os.environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT_URL


def _botocore_session() -> Any:
    """The user's region and static credentials when configured, placeholders otherwise."""
    import botocore.session

    session = botocore.session.get_session()
    resolver = session.get_component("credential_provider")
    for method in [provider.METHOD for provider in resolver.providers]:
        if method not in _STATIC_CREDENTIALS:
            resolver.remove(method)
    if session.get_credentials() is None:
        session.set_credentials(PLACEHOLDER_KEY, PLACEHOLDER_KEY)
    if not session.get_config_variable("region"):
        session.set_config_variable("region", PLACEHOLDER_REGION)
    return session


def run_against_server(endpoint_url: str | None, action: Callable[[Server], None]) -> int:
    """Runs one command; turns every expected failure into a short message on stderr and exit status 1."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    server = Server(resolve_endpoint_url(endpoint_url))
    try:
        action(server)
    except ClientError as err:
        _print_error(*client_error_lines(err.response))
    except (EndpointConnectionError, ConnectTimeoutError):
        _print_error(f"No Moorage server answers at {server.url}; start one with `moorage serve`.")
    except ReadTimeoutError:
        _print_error(f"The server at {server.url} accepted the connection but did not answer in time.")
    except (BotoCoreError, CommandError) as err:
        _print_error(f"Error: {err}")
    except BrokenPipeError:  # `moorage ls | head`: the reader left; stay quiet at exit too
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    else:
        return 0
    return 1


def client_error_lines(response: Mapping[str, Any]) -> list[str]:
    """`Error (Code): Message`, plus what the model itself answered when the model failed."""
    error = response.get("Error", {})
    lines = [f"Error ({error.get('Code', 'Unknown')}): {error.get('Message', '(no message)')}"]
    if error.get("Code") == "ModelError":
        lines += [
            f"  {key}: {response[key]}"
            for key in ("OriginalStatusCode", "OriginalMessage")
            if key in response
        ]
    return lines


def _print_error(*lines: str) -> None:
    print("\n".join(lines), file=sys.stderr)


# moorage ls


def list_endpoints(endpoint_url: str | None) -> int:
    """Every endpoint with its variants' instance counts and weights, one aligned table."""
    return run_against_server(endpoint_url, _print_endpoint_table)


def _print_endpoint_table(server: Server) -> None:
    sm = server.client("sagemaker")
    pages = sm.get_paginator("list_endpoints").paginate(SortBy="Name", SortOrder="Ascending")
    names = [summary["EndpointName"] for page in pages for summary in page["Endpoints"]]
    if not names:
        print(f"No endpoints on {server.url}.")
        return
    with ThreadPoolExecutor(_DESCRIBE_THREADS) as pool:  # one round trip per endpoint; overlap them
        described = [d for d in pool.map(lambda name: _describe_if_exists(sm, name), names) if d]
    print(format_table(endpoint_rows(described)))


def _describe_if_exists(sm: Any, name: str) -> dict[str, Any] | None:
    """DescribeEndpoint, or None when the endpoint was deleted since it was listed."""
    try:
        return dict(sm.describe_endpoint(EndpointName=name))
    except sm.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def endpoint_rows(described: Iterable[Mapping[str, Any]]) -> list[list[str]]:
    """The table: a header, then one row per variant; the endpoint's name and status on its first row."""
    rows: list[list[str]] = []
    for endpoint in described:
        variants = _variants_for_listing(endpoint)
        first = [endpoint["EndpointName"], endpoint["EndpointStatus"]]
        if not variants:
            rows.append([*first, "-", "-", "-", ""])
        for index, variant in enumerate(variants):
            rows.append(
                [
                    *(first if index == 0 else ["", ""]),
                    variant["VariantName"],
                    change(variant.get("CurrentInstanceCount"), variant.get("DesiredInstanceCount")),
                    change(_weight(variant.get("CurrentWeight")), _weight(variant.get("DesiredWeight"))),
                    ", ".join(s["Status"] for s in variant.get("VariantStatus", [])),
                ]
            )
    header = ["ENDPOINT", "STATUS", "VARIANT", "INSTANCES", "WEIGHT", "VARIANT STATUS"]
    if not any(row[-1] for row in rows):  # a column nobody uses is noise
        return [header[:-1], *(row[:-1] for row in rows)]
    return [header, *rows]


def _variants_for_listing(endpoint: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The running variants; while an endpoint is still being created, the ones it is starting (0 now)."""
    variants: list[Mapping[str, Any]] = endpoint.get("ProductionVariants", [])
    if variants:
        return variants
    pending = endpoint.get("PendingDeploymentSummary", {}).get("ProductionVariants", [])
    return [{"CurrentInstanceCount": 0, **variant} for variant in pending]


def change(current: object, desired: object) -> str:
    """`3`, or `1→3` while the desired value differs from the current one; `-` when neither is known."""
    if current is None:
        return "-" if desired is None else str(desired)
    if desired is None or desired == current:
        return str(current)
    return f"{current}{_ARROW}{desired}"


def _weight(value: float | None) -> str | None:
    return None if value is None else f"{value:g}"


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart, no trailing blanks."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


# moorage describe


def describe_endpoint(name: str, endpoint_url: str | None, as_json: bool = False) -> int:
    """One endpoint in full: its variants with what runs where, and any deployment in progress."""

    def action(server: Server) -> None:
        sm = server.client("sagemaker")
        raw: dict[str, Any] = {}

        def keep_raw(http_response: Any, **_: Any) -> None:
            with contextlib.suppress(ValueError, TypeError):
                raw.update(json.loads(http_response.content))

        sm.meta.events.register("after-call.sagemaker.DescribeEndpoint", keep_raw)
        described = dict(sm.describe_endpoint(EndpointName=name))
        described.pop("ResponseMetadata", None)
        if INSTANCES_MEMBER in raw:  # where each instance runs: a member botocore's model does not name
            described[INSTANCES_MEMBER] = raw[INSTANCES_MEMBER]
        if as_json:
            print(json.dumps(described, indent=2, ensure_ascii=False, default=_json_value))
            return
        config = _endpoint_config(sm, described["EndpointConfigName"])
        print("\n".join(describe_lines(described, config)))

    return run_against_server(endpoint_url, action)


def _json_value(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _endpoint_config(sm: Any, name: str) -> dict[str, Any] | None:
    """DescribeEndpointConfig; None when it was deleted (the endpoint keeps running without it)."""
    try:
        return dict(sm.describe_endpoint_config(EndpointConfigName=name))
    except sm.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def describe_lines(endpoint: Mapping[str, Any], config: Mapping[str, Any] | None) -> list[str]:
    """The text of `moorage describe`: the endpoint, then each variant, then a pending deployment."""
    fields = [
        ("Status", endpoint["EndpointStatus"]),
        ("ARN", endpoint["EndpointArn"]),
        ("Config", endpoint["EndpointConfigName"] + ("" if config else " (deleted since)")),
        ("Created", local_time(endpoint["CreationTime"])),
        ("Modified", local_time(endpoint["LastModifiedTime"])),
    ]
    if endpoint.get("FailureReason"):
        fields.append(("Failure", endpoint["FailureReason"]))
    if endpoint.get("LastDeploymentConfig"):
        fields.append(("Deployment", json.dumps(endpoint["LastDeploymentConfig"], default=_json_value)))
    lines = [f"Endpoint {endpoint['EndpointName']}", *aligned(fields, indent=2)]
    configured = {v["VariantName"]: v for v in (config or {}).get("ProductionVariants", [])}
    placed = endpoint.get(INSTANCES_MEMBER, [])
    for variant in endpoint.get("ProductionVariants", []):
        lines += ["", f"Variant {variant['VariantName']}"]
        fields = _variant_fields(variant, configured.get(variant["VariantName"]), config)
        fields += [
            (f"Instance {p['InstanceId']}", p["Placement"])
            for p in placed
            if p.get("VariantName") == variant["VariantName"]
        ]
        lines += aligned(fields, indent=2)
    pending = endpoint.get("PendingDeploymentSummary")
    if pending:
        lines += [
            "",
            f"Pending deployment of config {pending['EndpointConfigName']}, "
            f"started {local_time(pending['StartTime'])}",
        ]
        for variant in pending.get("ProductionVariants", []):
            lines.append(f"  Variant {variant['VariantName']}")
            lines += aligned(_variant_fields(variant, variant, None), indent=4)
    return lines


def _variant_fields(
    variant: Mapping[str, Any], configured: Mapping[str, Any] | None, config: Mapping[str, Any] | None
) -> list[tuple[str, str]]:
    """One variant as label/value pairs; `configured` is its entry in the endpoint config, if known."""
    fields: list[tuple[str, str]] = []
    if configured and configured.get("ModelName"):
        fields.append(("Model", configured["ModelName"]))
    images = [_image(image) for image in variant.get("DeployedImages", [])]
    fields.append(("Images" if len(images) > 1 else "Image", ", ".join(images) or "-"))
    fields.append(("Instance type", _instance_type(variant, configured, config)))
    fields.append(
        ("Instances", change(variant.get("CurrentInstanceCount"), variant.get("DesiredInstanceCount")))
    )
    fields.append(
        ("Weight", change(_weight(variant.get("CurrentWeight")), _weight(variant.get("DesiredWeight"))))
    )
    if variant.get("RoutingConfig"):
        fields.append(("Routing", variant["RoutingConfig"].get("RoutingStrategy", "-")))
    current, desired = variant.get("CurrentServerlessConfig"), variant.get("DesiredServerlessConfig")
    if current or desired:
        now, wanted = _serverless(current), _serverless(desired)
        shown = now if not wanted or wanted == now else f"{now or '-'} {_ARROW} {wanted}"
        fields.append(("Serverless", shown or "-"))
    for status in variant.get("VariantStatus", []):
        text = status["Status"]
        if status.get("StartTime"):
            text += f" since {local_time(status['StartTime'])}"
        if status.get("StatusMessage"):
            text += f": {status['StatusMessage']}"
        fields.append(("Status", text))
    return fields


def _image(image: Mapping[str, Any]) -> str:
    specified, resolved = image.get("SpecifiedImage", "-"), image.get("ResolvedImage")
    return specified if not resolved or resolved == specified else f"{specified} ({resolved})"


def _instance_type(
    variant: Mapping[str, Any], configured: Mapping[str, Any] | None, config: Mapping[str, Any] | None
) -> str:
    if configured is None:
        return "unknown (not in the endpoint config)" if config else "unknown (endpoint config deleted)"
    if configured.get("InstanceType"):
        return str(configured["InstanceType"])
    return "serverless" if configured.get("ServerlessConfig") or "CurrentServerlessConfig" in variant else "-"


def _serverless(config: Mapping[str, Any] | None) -> str | None:
    if not config:
        return None
    text = f"{config.get('MemorySizeInMB', '?')} MB, max concurrency {config.get('MaxConcurrency', '?')}"
    if config.get("ProvisionedConcurrency"):
        text += f", provisioned {config['ProvisionedConcurrency']}"
    return text


def aligned(fields: Sequence[tuple[str, str]], indent: int) -> list[str]:
    """`Label   value` lines with the values in one column."""
    width = max((len(label) for label, _ in fields), default=0)
    return [f"{' ' * indent}{label.ljust(width)}  {value}" for label, value in fields]


def local_time(value: datetime) -> str:
    """A timestamp in this machine's time zone, to the second."""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


# moorage invoke


@dataclass
class Invocation:
    endpoint: str
    body: str  # the --body argument: text, @path, or @- for stdin
    content_type: str | None = None
    accept: str | None = None
    target_variant: str | None = None
    target_model: str | None = None  # TargetModel: a multi-model endpoint's model, relative to its prefix
    target_container_hostname: str | None = None  # TargetContainerHostname: a Direct endpoint's container
    custom_attributes: str | None = None


def invoke_endpoint(invocation: Invocation, endpoint_url: str | None) -> int:
    """InvokeEndpoint; the answer's body on stdout (pipeable), what served it on stderr."""

    def action(server: Server) -> None:
        body = read_body(invocation.body)  # before connecting: a wrong path is the user's first problem
        runtime = server.client("sagemaker-runtime", read_timeout=INVOKE_READ_TIMEOUT_S)
        response = runtime.invoke_endpoint(**_invoke_params(invocation, body))
        answer: bytes = response["Body"].read()
        content_type = response.get("ContentType", "")
        about = [
            f"variant {response.get('InvokedProductionVariant', '-')}",
            content_type,
            f"{len(answer)} bytes",
        ]
        if response.get("CustomAttributes"):
            about.append(f"custom attributes {response['CustomAttributes']!r}")
        print(", ".join(part for part in about if part), file=sys.stderr)
        write_answer(answer, content_type, sys.stdout)

    return run_against_server(endpoint_url, action)


def read_body(argument: str) -> bytes:
    """`@-` is stdin, `@path` a file's bytes, anything else the text itself (UTF-8), as curl does."""
    if argument == "@-":
        return sys.stdin.buffer.read()
    if argument.startswith("@"):
        path = Path(argument[1:])
        try:
            return path.read_bytes()
        except OSError as err:
            raise CommandError(f"cannot read the body from {path}: {err.strerror}") from err
    return argument.encode()


def _invoke_params(invocation: Invocation, body: bytes) -> dict[str, Any]:
    optional = {
        "ContentType": invocation.content_type,
        "Accept": invocation.accept,
        "TargetVariant": invocation.target_variant,
        "TargetModel": invocation.target_model,
        "TargetContainerHostname": invocation.target_container_hostname,
        "CustomAttributes": invocation.custom_attributes,
    }
    given = {key: value for key, value in optional.items() if value is not None}
    return {"EndpointName": invocation.endpoint, "Body": body, **given}


def write_answer(answer: bytes, content_type: str, out: Any) -> None:
    """Exact bytes into a pipe or file; on a terminal, JSON indented and binary withheld."""
    if not out.isatty():
        out.buffer.write(answer)
        out.flush()
        return
    if _is_json(content_type):
        try:
            out.write(json.dumps(json.loads(answer), indent=2, ensure_ascii=False) + "\n")
            return
        except ValueError:
            pass  # not JSON after all: shown as text below
    try:
        text = answer.decode()
    except UnicodeDecodeError:
        print(
            f"({len(answer)} bytes of binary {content_type or 'data'} not shown on a terminal; "
            "redirect stdout to a file to keep them)",
            file=sys.stderr,
        )
        return
    out.write(text if not text or text.endswith("\n") else text + "\n")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")
