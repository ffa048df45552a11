"""The SageMaker Python SDK (v2) against Moorage, unchanged but for the endpoint URL.

`Model.deploy()`, `Predictor.predict()`, `Predictor.update_endpoint()` and the SDK's clean-up calls
run the control plane the way most SageMaker users drive it, with the SDK's own waiters and
serializers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import unique
from tests.support.moorage_server import RunningServer

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
NO_TELEMETRY = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
IMAGE = "763104351884.dkr.ecr.us-west-2.amazonaws.com/pytorch-inference:2.1-cpu-py310"


# The SDK makes boto3 clients of its own (at import, and in Session) from the default credential chain;
# with nothing configured that chain ends at the instance metadata address. Placeholders stop it first,
# so nothing leaves loopback.
NO_AWS_LOOKUPS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-west-2",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
}


@pytest.fixture(scope="module")
def sdk_session(server: RunningServer) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as environment:
        for name, value in NO_AWS_LOOKUPS.items():
            environment.setenv(name, value)
        import sagemaker  # the dev extra installs it

        boto_session = boto3.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name="us-west-2"
        )
        yield sagemaker.Session(
            boto_session=boto_session,
            sagemaker_client=server.client("sagemaker"),
            sagemaker_runtime_client=server.client("sagemaker-runtime"),
            default_bucket="unused-bucket",  # keeps the SDK from creating one in S3
            sagemaker_config=NO_TELEMETRY,  # and from reporting usage to AWS
        )


def test_model_deploy_predict_update_and_delete(sdk_session: Any, sm: Any, echo_model: str) -> None:
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.model import Model
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import JSONSerializer

    name = unique("sdk")
    model = Model(
        image_uri=IMAGE,
        model_data=echo_model,
        role=ROLE,
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "1"},
        sagemaker_session=sdk_session,
        name=name,
    )
    model.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=name, wait=False)
    sdk_session.wait_for_endpoint(name, poll=0.5)
    predictor = Predictor(
        name, sagemaker_session=sdk_session, serializer=JSONSerializer(), deserializer=JSONDeserializer()
    )
    answer = predictor.predict({"hello": "sdk"})
    assert answer["echo"] == {"hello": "sdk"} and answer["greeting"] == "hello"

    predictor.update_endpoint(initial_instance_count=2, instance_type="ml.m5.large", wait=False)
    sdk_session.wait_for_endpoint(name, poll=0.5)
    variant = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
    assert variant["CurrentInstanceCount"] == 2
    assert predictor.predict({"after": "update"})["echo"] == {"after": "update"}

    predictor.delete_endpoint()  # also deletes the endpoint config the SDK created
    model.delete_model()
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    assert not sm.list_models(NameContains=name)["Models"]
