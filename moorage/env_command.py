"""`moorage env`: shell `export` lines that point an unchanged SageMaker notebook at Moorage.

    eval "$(moorage env)"

What it sets, and why each is needed (read against the SageMaker Python SDK 2.257 installed here):

- ``AWS_ENDPOINT_URL``: one URL for every boto3 client (sagemaker, sagemaker-runtime, s3,
  application-autoscaling, sts), since Moorage answers them all on one port. Per-service
  ``AWS_ENDPOINT_URL_<SERVICE>`` variables would win over it, so any already set are unset, as is
  ``AWS_IGNORE_CONFIGURED_ENDPOINT_URLS``, which would turn the variable off.
- ``AWS_DEFAULT_REGION`` / ``AWS_REGION``, and placeholder ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY``: only when none are configured (environment, profile, config files;
  the credential chain is searched without the instance-metadata and container providers, so
  nothing goes over the network). boto3 refuses to sign without some key.
- ``SAGEMAKER_USER_CONFIG_OVERRIDE``: a SageMaker SDK config file written into the state directory
  with ``SageMaker.PythonSDK.Modules.Session.DefaultS3Bucket`` = ``sagemaker-<region>-<account>``
  and ``TelemetryOptOut: true``. This is what keeps the SDK off AWS's STS:

  * ``Session.default_bucket()`` (sagemaker/session.py) calls ``generate_default_sagemaker_bucket_name``
    only when no bucket is configured, and that function builds its STS client with an explicit
    ``endpoint_url=sts_regional_endpoint(region)`` (``https://sts.<region>.amazonaws.com``), which
    ``AWS_ENDPOINT_URL`` cannot redirect. With the bucket configured, ``_default_bucket_set_by_sdk``
    stays False, so ``_create_s3_bucket_if_it_does_not_exist``,
    ``general_bucket_check_if_user_has_permission`` and ``expected_bucket_owner_id_bucket_check``
    never call ``Session.account_id()`` (the other explicit-endpoint STS client)
    either; they only talk to S3, which goes to Moorage.
  * Telemetry (sagemaker/telemetry/telemetry_logging.py) would send a GET to an AWS telemetry URL
    and call STS for the account on every decorated call such as ``Model.deploy``; it is skipped
    when ``TelemetryOptOut`` resolves to true.
  * So ``Model(entry_point=…, source_dir=…).deploy()`` — repack or upload the code to the default
    bucket, CreateModel, CreateEndpointConfig, CreateEndpoint, DescribeEndpoint until InService —
    makes no STS call. ``sagemaker.get_execution_role()`` and ``Session.get_caller_identity_arn()``
    still build their STS client with the explicit regional endpoint: pass ``role=`` as a string.

The account in the bucket name is the server's answer to STS GetCallerIdentity on the endpoint URL
(the verified key's account when the server checks signatures); if the server is not up, 123456789012.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from moorage.awsconfig import offline_session

DEFAULT_ENDPOINT_URL = "http://127.0.0.1:7070"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT = "123456789012"
PLACEHOLDER_KEY = "moorage"
CONFIG_FILE_NAME = "sagemaker-sdk-config.yaml"


@dataclass
class Environment:
    exports: dict[str, str] = field(default_factory=dict)
    unsets: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def script(self) -> str:
        lines = [f"unset {name}" for name in self.unsets]
        lines += [f"export {name}={shlex.quote(value)}" for name, value in self.exports.items()]
        return "".join(line + "\n" for line in lines)


def _configured(environ: Mapping[str, str]) -> tuple[str | None, bool]:
    """The region boto3 would use (or None) and whether it would find credentials, with no network."""
    session = offline_session()
    region = (
        environ.get("AWS_REGION")
        or environ.get("AWS_DEFAULT_REGION")
        or session.get_config_variable("region")
    )
    try:
        has_credentials = session.get_credentials() is not None
    except Exception:  # a broken profile counts as none configured
        has_credentials = False
    return region or None, has_credentials


def caller_account(endpoint_url: str, region: str, credentials: Mapping[str, str]) -> tuple[str, str | None]:
    """The account STS GetCallerIdentity on `endpoint_url` reports, or the default and why."""
    import boto3
    from botocore.config import Config

    try:
        sts = boto3.Session(region_name=region, **credentials).client(
            "sts",
            endpoint_url=endpoint_url,
            config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1, "mode": "standard"}),
        )
        return str(sts.get_caller_identity()["Account"]), None
    except Exception as err:  # not up, refused, not Moorage: fall back, and say so
        return (
            DEFAULT_ACCOUNT,
            f"could not ask {endpoint_url} for the account ({err}); using {DEFAULT_ACCOUNT}",
        )


def build_environment(
    endpoint_url: str | None, state_dir: Path, environ: Mapping[str, str] | None = None
) -> Environment:
    """Everything `moorage env` prints; writes the SDK config file into `state_dir`."""
    environ = os.environ if environ is None else environ
    env = Environment()
    url = endpoint_url or environ.get("AWS_ENDPOINT_URL") or DEFAULT_ENDPOINT_URL
    env.exports["AWS_ENDPOINT_URL"] = url
    for name in sorted(environ):
        if name.startswith("AWS_ENDPOINT_URL_") or name == "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS":
            env.unsets.append(name)
            env.notes.append(f"unsetting {name}, which would send some calls somewhere other than {url}")
    region, has_credentials = _configured(environ)
    if region is None:
        region = DEFAULT_REGION
        env.exports["AWS_DEFAULT_REGION"] = region
        env.exports["AWS_REGION"] = region
    credentials: dict[str, str] = {}
    if not has_credentials:
        credentials = {"aws_access_key_id": PLACEHOLDER_KEY, "aws_secret_access_key": PLACEHOLDER_KEY}
        env.exports["AWS_ACCESS_KEY_ID"] = PLACEHOLDER_KEY
        env.exports["AWS_SECRET_ACCESS_KEY"] = PLACEHOLDER_KEY
        env.notes.append(
            "no AWS credentials configured: exporting placeholders (a server started with --credentials "
            "will refuse them; export a key from its file instead)"
        )
    account, problem = caller_account(url, region, credentials)
    if problem:
        env.notes.append(problem)
    config_path = write_sdk_config(state_dir, f"sagemaker-{region}-{account}")
    env.exports["SAGEMAKER_USER_CONFIG_OVERRIDE"] = str(config_path)
    return env


def write_sdk_config(state_dir: Path, bucket: str) -> Path:
    """The SageMaker Python SDK config file (JSON is YAML) with the default bucket and telemetry off."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = (state_dir / CONFIG_FILE_NAME).resolve()
    config = {
        "SchemaVersion": "1.0",
        "SageMaker": {
            "PythonSDK": {"Modules": {"Session": {"DefaultS3Bucket": bucket}, "TelemetryOptOut": True}}
        },
    }
    path.write_text("# written by `moorage env`\n" + json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return path


def main(endpoint_url: str | None, state_dir: str) -> int:
    env = build_environment(endpoint_url, Path(state_dir))
    for note in env.notes:
        print(f"moorage env: {note}", file=sys.stderr)
    sys.stdout.write(env.script())
    return 0
