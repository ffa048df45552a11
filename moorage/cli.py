"""The `moorage` command: `serve` and `logs` here; `ls`, `describe`, `invoke` in client_commands.py,
`env` in env_command.py."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_STATE_DIR = ".moorage"


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from moorage.app import serve
    from moorage.auth import BindRefused, KeyFileError, check_bind, load_keyring
    from moorage.auth.keys import the_account
    from moorage.config import Settings

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        warning = check_bind(args.host, args.credentials, args.insecure_no_auth)
        if args.credentials:
            # a bad keys file stops here, before anything starts
            the_account(load_keyring(args.credentials), args.credentials)
    except (BindRefused, KeyFileError) as refusal:
        print(f"moorage serve: {refusal}", file=sys.stderr)
        return 2
    if warning:
        logging.getLogger("moorage").warning("%s", warning)
    from moorage.jobs.notify import ENV_VAR, WebhookConfigError, parse_webhooks
    from moorage.store.db import StoreError, describe_url

    try:
        webhooks = parse_webhooks([os.environ.get(ENV_VAR, ""), *args.sns_webhook])
    except WebhookConfigError as error:
        print(f"moorage serve: --sns-webhook / {ENV_VAR}: {error}", file=sys.stderr)
        return 2

    given: dict[str, Any] = {}  # options set on the command line; the others keep the environment's
    if args.database_url:
        given["database_url"] = args.database_url
    if args.local_data_root:
        given["local_data_root"] = Path(args.local_data_root)
    settings = Settings(
        **given,
        state_dir=Path(args.state_dir),
        host=args.host,
        port=args.port,
        credentials_file=Path(args.credentials) if args.credentials else None,
        insecure_no_auth=args.insecure_no_auth,
        s3_enabled=not args.no_s3,
        s3_endpoint=args.s3_endpoint,
        compute=args.compute,
        ray_address=args.ray_address,
        ray_node_address=args.ray_node_address,
        sns_webhooks=webhooks,
    )
    state = describe_url(settings.database_url) if settings.database_url else settings.state_dir
    banner = f"Moorage: SageMaker API on http://{args.host}:{args.port} (state in {state})"
    try:
        import uvloop
    except ImportError:
        run = asyncio.run
    else:
        run = uvloop.run
    from moorage.compute.ray_provider import RayUnavailable

    try:
        run(serve(settings, ready=banner))
    except (StoreError, RayUnavailable) as error:
        print(f"moorage serve: {error}", file=sys.stderr)
        return 2
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


def _ls(args: argparse.Namespace) -> int:
    from moorage.client_commands import list_endpoints

    return list_endpoints(args.endpoint_url)


def _describe(args: argparse.Namespace) -> int:
    from moorage.client_commands import describe_endpoint

    return describe_endpoint(args.endpoint, args.endpoint_url, as_json=args.json)


def _invoke(args: argparse.Namespace) -> int:
    from moorage.client_commands import Invocation, invoke_endpoint

    invocation = Invocation(
        endpoint=args.endpoint,
        body=args.body,
        content_type=args.content_type,
        accept=args.accept,
        target_variant=args.target_variant,
        target_model=args.target_model,
        target_container_hostname=args.target_container_hostname,
        custom_attributes=args.custom_attributes,
    )
    return invoke_endpoint(invocation, args.endpoint_url)


def _jobs(args: argparse.Namespace) -> int:
    from moorage.jobs_command import list_jobs

    return list_jobs(args.endpoint_url, watch=args.watch, name_contains=args.name_contains)


def _env(args: argparse.Namespace) -> int:
    from moorage.env_command import main as env_main

    return env_main(args.endpoint_url, args.state_dir)


def _add_endpoint_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="the Moorage server (default: $AWS_ENDPOINT_URL, else http://127.0.0.1:7070)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moorage", description="Self-hosted SageMaker Hosting.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server (control plane and runtime on one port)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7070)
    serve.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    serve.add_argument(
        "--credentials",
        metavar="FILE",
        help="verify SigV4 signatures against the keys in FILE (~/.aws/credentials format)",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="unsafe: listen on a non-loopback --host without --credentials",
    )
    serve.add_argument(
        "--database-url",
        metavar="URL",
        help="keep state in this database, postgresql://USER:PASSWORD@HOST/DB (default: "
        "$MOORAGE_DATABASE_URL, else SQLite in --state-dir)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    compute = serve.add_argument_group("where instances run (docs/cluster.md)")
    compute.add_argument(
        "--compute",
        choices=["local", "ray"],
        default="local",
        help="local processes (default), or actors on a Ray cluster",
    )
    compute.add_argument(
        "--ray-address",
        default="auto",
        metavar="ADDRESS",
        help="the Ray cluster: auto (the one this machine belongs to), HOST:PORT or ray://HOST:PORT",
    )
    compute.add_argument(
        "--ray-node-address",
        metavar="IP",
        help="this server's address on the cluster's network (default: the one Ray picks)",
    )
    serve.add_argument(
        "--sns-webhook",
        action="append",
        default=[],
        metavar="TOPIC_ARN=URL",
        help="deliver what is published to an SNS topic (async inference notifications) to this HTTP "
        "webhook; repeatable, added to MOORAGE_SNS_WEBHOOKS (docs/async.md)",
    )
    serve.add_argument(
        "--local-data-root",
        metavar="DIR",
        help="with --credentials, the only folder on this machine that InvokeEndpointAsync InputLocations "
        "and batch transform S3Uri / S3OutputPath may name (default: MOORAGE_LOCAL_DATA_ROOT; "
        "unset: s3:// only; docs/security.md)",
    )
    s3 = serve.add_mutually_exclusive_group()
    s3.add_argument(
        "--s3-endpoint",
        metavar="URL",
        help="pass S3 requests on the port to this S3-compatible store instead of the embedded one",
    )
    s3.add_argument("--no-s3", action="store_true", help="no S3 on the port (no embedded store)")
    serve.set_defaults(func=_serve)
    logs = commands.add_parser("logs", help="show an endpoint's log (instances' output and server events)")
    logs.add_argument("endpoint")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--state-dir", default=DEFAULT_STATE_DIR)
    logs.set_defaults(func=_logs)
    ls = commands.add_parser("ls", help="list endpoints with their variants' instances and weights")
    _add_endpoint_url(ls)
    ls.set_defaults(func=_ls)
    describe = commands.add_parser("describe", help="show one endpoint, its variants and any deployment")
    describe.add_argument("endpoint")
    describe.add_argument("--json", action="store_true", help="the raw DescribeEndpoint response")
    _add_endpoint_url(describe)
    describe.set_defaults(func=_describe)
    invoke = commands.add_parser("invoke", help="call InvokeEndpoint; the answer's body goes to stdout")
    invoke.add_argument("endpoint")
    invoke.add_argument("--body", required=True, help="the request body: TEXT, @FILE, or @- for stdin")
    invoke.add_argument("--content-type", metavar="TYPE")
    invoke.add_argument("--accept", metavar="TYPE")
    invoke.add_argument("--target-variant", metavar="NAME")
    invoke.add_argument("--target-model", metavar="PATH", help="a multi-model endpoint's model (TargetModel)")
    invoke.add_argument(
        "--target-container-hostname",
        metavar="NAME",
        help="a Direct multi-container endpoint's container (TargetContainerHostname)",
    )
    invoke.add_argument("--custom-attributes", metavar="TEXT")
    _add_endpoint_url(invoke)
    invoke.set_defaults(func=_invoke)
    jobs = commands.add_parser(
        "jobs", help="list batch transform jobs: status, records done / total, a progress bar while they run"
    )
    jobs.add_argument("--watch", action="store_true", help="redraw every second until no job runs")
    jobs.add_argument("--name-contains", metavar="TEXT", help="only jobs whose name contains TEXT")
    _add_endpoint_url(jobs)
    jobs.set_defaults(func=_jobs)
    env = commands.add_parser(
        "env", help='print shell exports that point boto3 and the SageMaker SDK here: eval "$(moorage env)"'
    )
    _add_endpoint_url(env)
    env.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="where the SDK config file is written")
    env.set_defaults(func=_env)
    from moorage.images.commands import add_arguments as add_image_arguments

    add_image_arguments(commands, DEFAULT_STATE_DIR)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
