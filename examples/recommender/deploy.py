"""Deploy the recommender with plain boto3, as against Amazon SageMaker, and invoke it once.

Steps: generate the data if missing, pack ``model.tar.gz``, upload it to S3 when ``--s3-bucket`` is
given (the S3 endpoint comes from ``AWS_ENDPOINT_URL_S3``, or AWS itself), else point the model at the
local archive with a ``file://`` URL; then CreateModel -> CreateEndpointConfig -> CreateEndpoint, the
``endpoint_in_service`` waiter, and one InvokeEndpoint with ``{"user_id": "u42", "k": 5}``.

Only ``endpoint_url`` makes this talk to Moorage instead of AWS. Re-running replaces the endpoint,
endpoint config and model of the same name (delete, then create), because the artifact may have
changed; ``--reuse`` keeps an existing InService endpoint and only invokes it.

Usage: python deploy.py [--endpoint-url http://127.0.0.1:7070] [--movies 5000] [--name recommender]
                        [--model-data s3://bucket/key | FILE] [--s3-bucket BUCKET] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError, EndpointConnectionError, WaiterError

HERE = Path(__file__).resolve().parent
DEFAULT_ENDPOINT_URL = "http://127.0.0.1:7070"


def clients(endpoint_url: str | None, region: str | None = None) -> tuple[Any, Any]:
    """The ``sagemaker`` and ``sagemaker-runtime`` clients; ``endpoint_url=None`` means AWS itself."""
    session = boto3.Session(region_name=region or os.environ.get("AWS_REGION") or "us-east-1")
    extra: dict[str, str] = {}
    if endpoint_url and session.get_credentials() is None:
        # a local server accepts any key; AWS itself would need real ones
        extra = {"aws_access_key_id": "moorage", "aws_secret_access_key": "moorage"}
    sm = session.client("sagemaker", endpoint_url=endpoint_url, **extra)
    runtime = session.client("sagemaker-runtime", endpoint_url=endpoint_url, **extra)
    return sm, runtime


def _missing(e: ClientError) -> bool:
    return e.response.get("Error", {}).get("Code") in ("ValidationException", "ResourceNotFound")


def delete_if_present(sm: Any, name: str, waiter_delay: int = 1) -> None:
    """Delete the endpoint, endpoint config and model called ``name``; absent ones are fine."""
    try:
        sm.delete_endpoint(EndpointName=name)
        sm.get_waiter("endpoint_deleted").wait(
            EndpointName=name, WaiterConfig={"Delay": waiter_delay, "MaxAttempts": 300}
        )
    except ClientError as e:
        if not _missing(e):
            raise
    for call, key in ((sm.delete_endpoint_config, "EndpointConfigName"), (sm.delete_model, "ModelName")):
        try:
            call(**{key: name})
        except ClientError as e:
            if not _missing(e):
                raise


def create_model(
    sm: Any,
    name: str,
    model_data: str,
    environment: dict[str, str] | None = None,
    image: str | None = None,
    role_arn: str | None = None,
) -> None:
    container: dict[str, Any] = {"ModelDataUrl": model_data, "Environment": environment or {}}
    if image:
        container["Image"] = image
    params: dict[str, Any] = {"ModelName": name, "PrimaryContainer": container}
    if role_arn:
        params["ExecutionRoleArn"] = role_arn
    sm.create_model(**params)


def create_endpoint_config(sm: Any, name: str, model_name: str, instance_type: str = "ml.m5.large") -> None:
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model_name,
                "InstanceType": instance_type,
                "InitialInstanceCount": 1,
            }
        ],
    )


def invoke(runtime: Any, name: str, request: dict[str, Any]) -> dict[str, Any]:
    response = runtime.invoke_endpoint(
        EndpointName=name,
        ContentType="application/json",
        Accept="application/json",
        Body=json.dumps(request),
    )
    result: dict[str, Any] = json.loads(response["Body"].read())
    return result


def upload(archive: Path, bucket: str, key: str) -> str:
    boto3.client("s3").upload_file(str(archive), bucket, key)
    return f"s3://{bucket}/{key}"


def model_data_url(args: argparse.Namespace) -> str:
    """The ModelDataUrl to register: given, uploaded to S3, or the local archive as ``file://``."""
    if args.model_data:
        if "://" in args.model_data:
            return str(args.model_data)
        return Path(args.model_data).resolve().as_uri()
    sys.path.insert(0, str(HERE))
    from pack import build

    archive = build(users=args.users, movies=args.movies)
    if args.s3_bucket:
        return upload(archive, args.s3_bucket, args.s3_key)
    return archive.as_uri()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint-url", default=DEFAULT_ENDPOINT_URL, help="'' for AWS itself")
    ap.add_argument("--region", default=None)
    ap.add_argument("--name", default="recommender", help="model, endpoint config and endpoint name")
    ap.add_argument("--movies", type=int, default=5000)
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--model-data", help="an existing artifact (s3://..., file://... or a path)")
    ap.add_argument("--s3-bucket", help="upload the packed archive here")
    ap.add_argument("--s3-key", default="recommender/model.tar.gz")
    ap.add_argument("--image", help="inference image (needed on AWS; optional on Moorage)")
    ap.add_argument("--role-arn", help="execution role (needed on AWS; optional on Moorage)")
    ap.add_argument("--workers", type=int, help="SAGEMAKER_MODEL_SERVER_WORKERS (default: CPU count)")
    ap.add_argument("--reuse", action="store_true", help="keep an existing endpoint of this name")
    args = ap.parse_args(argv)

    sm, runtime = clients(args.endpoint_url or None, args.region)
    name = args.name
    exists = True
    try:
        # only a serving endpoint is worth reusing; a Failed or half-made one is replaced
        exists = sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
    except ClientError as e:
        if not _missing(e):
            raise
        exists = False
    except EndpointConnectionError:
        print(f"nothing answers at {args.endpoint_url}; is `moorage serve` running?", file=sys.stderr)
        return 2
    if not (exists and args.reuse):
        data = model_data_url(args)
        print(f"model data: {data}")
        delete_if_present(sm, name)
        env = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(args.workers)} if args.workers else {}
        create_model(sm, name, data, env, args.image, args.role_arn)
        create_endpoint_config(sm, name, name)
        t0 = time.perf_counter()
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
        try:
            sm.get_waiter("endpoint_in_service").wait(
                EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 600}
            )
        except WaiterError:
            reason = sm.describe_endpoint(EndpointName=name).get("FailureReason", "(none given)")
            print(f"endpoint {name} did not reach InService: {reason}", file=sys.stderr)
            return 1
        print(f"endpoint {name} InService after {time.perf_counter() - t0:.1f} s")
    answer = invoke(runtime, name, {"user_id": "u42", "k": 5})
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
