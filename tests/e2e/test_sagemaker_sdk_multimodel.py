"""The SageMaker Python SDK (v2) driving multi-model endpoints and inference pipelines, written as the
SDK's own documentation writes them: `MultiDataModel` (add_model to an S3 prefix, list_models, deploy,
predict with target_model, a model added after deploy; the handlers from the model's sourcedir.tar.gz
or from each archive's code/) and `PipelineModel` (an SKLearnModel whose entry_point the SDK uploads as
sourcedir.tar.gz, chained to a Model whose entry_point it repacks into the archive; with network
isolation; and the SDK's container definitions as a Direct model, since the SDK has no
InferenceExecutionConfig).

S3 is the server's own (one port for every client, as `moorage env` sets it up), so the SDK's uploads,
copies and listings reach the same store the endpoints read. The images are what
`sagemaker.image_uris.retrieve` gives for scikit-learn 1.2-1: Moorage serves them with the built-in
runtime and scikit-learn from PyPI (docs/images.md)."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.e2e.conftest import FAST_WAIT, unique
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.pypi import needs_pypi
from tests.support.sdk_poll import short_endpoint_poll

pytestmark = needs_pypi  # the scikit-learn framework image installs scikit-learn from PyPI

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
REGION = "us-west-2"
NO_TELEMETRY = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
ONE_WORKER = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}

# CSV in, JSON out: the first container of the pipeline. SKLearnModel ships it as the SDK's entry_point
# in sourcedir.tar.gz (SAGEMAKER_SUBMIT_DIRECTORY=s3://…); the model archive's own code/inference.py
# must not be the one used.
PREPROCESS = """
import json

def model_fn(model_dir):
    return "pre"

def input_fn(body, content_type):
    if content_type != "text/csv":
        raise ValueError(f"preprocessor wants text/csv, got {content_type}")
    text = body.decode() if isinstance(body, bytes) else body
    return [float(cell) for cell in text.strip().split(",")]

def predict_fn(values, model):
    return {"values": values, "sum": sum(values), "by": model}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


# JSON in, JSON out: the second container, a plain Model whose entry_point the SDK repacks into its
# model.tar.gz (SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code), next to the archive's code/inference.py.
POSTPROCESS = """
import json, os

def model_fn(model_dir):
    with open(os.path.join(model_dir, "weights.txt")) as f:
        return f.read().strip()

def input_fn(body, content_type):
    if content_type != "application/json":
        raise ValueError(f"model wants application/json, got {content_type}")
    return json.loads(body)

def predict_fn(data, weights):
    return {"weights": weights, "doubled": 2 * data["sum"], "from": data}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("state"), args=()) as running:  # S3 on the port too
        yield running


@pytest.fixture(scope="module")
def bucket(server: RunningServer) -> str:
    name = unique("sdk-models")
    server.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def sdk_session(server: RunningServer, bucket: str) -> Iterator[Any]:
    """A sagemaker.Session whose every boto3 client (sagemaker, runtime, s3) is the server's port,
    with credentials and region set so nothing is looked up elsewhere."""
    with pytest.MonkeyPatch.context() as environment:
        for name, value in {
            "AWS_ENDPOINT_URL": server.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "SAGEMAKER_SUPPRESS_V2_WARNING": "1",
        }.items():
            environment.setenv(name, value)
        import sagemaker  # the dev extra installs it

        boto_session = boto3.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
        )
        session = sagemaker.Session(
            boto_session=boto_session,
            sagemaker_client=server.client("sagemaker"),
            sagemaker_runtime_client=server.client("sagemaker-runtime"),
            default_bucket=bucket,  # exists already: the SDK creates none and asks STS nothing
            sagemaker_config=NO_TELEMETRY,
        )
        # deploy(wait=True) polls DescribeEndpoint every 30 s; the endpoints here are up in a second or two
        session_class = sagemaker.session.Session
        environment.setattr(session_class, "wait_for_endpoint", short_endpoint_poll(session_class))
        yield session


@pytest.fixture(scope="module")
def sklearn_image() -> str:
    from sagemaker import image_uris

    uri: str = image_uris.retrieve("sklearn", region=REGION, version="1.2-1", py_version="py3")
    assert "sagemaker-scikit-learn:1.2-1" in uri
    return uri


def _greeting_model(root: Path, greeting: str) -> Path:
    return build_model_tar(root / greeting / "model.tar.gz", files={"weights.txt": greeting})


def test_multi_data_model_add_list_deploy_predict_and_add_after_deploy(
    sdk_session: Any, sm: Any, server: RunningServer, bucket: str, sklearn_image: str, tmp_path: Path
) -> None:
    from botocore.exceptions import ClientError
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.multidatamodel import MultiDataModel
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import JSONSerializer

    name = unique("sdk-mme")
    prefix = f"s3://{bucket}/{name}/models/"
    mme = MultiDataModel(  # the image and the Model arguments given to it directly (no model=)
        name=name,
        model_data_prefix=prefix,
        image_uri=sklearn_image,
        role=ROLE,
        env=ONE_WORKER,
        predictor_cls=Predictor,
        sagemaker_session=sdk_session,
    )
    assert mme.add_model(str(_greeting_model(tmp_path, "alpha")), "a.tar.gz") == f"{prefix}a.tar.gz"
    assert mme.add_model(str(_greeting_model(tmp_path, "beta")), "b.tar.gz") == f"{prefix}b.tar.gz"
    assert sorted(mme.list_models()) == ["a.tar.gz", "b.tar.gz"]

    predictor = mme.deploy(
        initial_instance_count=1,
        instance_type="ml.m5.large",
        endpoint_name=name,
        serializer=JSONSerializer(),
        deserializer=JSONDeserializer(),
    )
    assert isinstance(predictor, Predictor)
    container = sm.describe_model(ModelName=name)["PrimaryContainer"]
    assert container["Mode"] == "MultiModel" and container["ModelDataUrl"] == prefix
    assert container["Image"] == sklearn_image

    for target, greeting in (("a.tar.gz", "alpha"), ("b.tar.gz", "beta")):
        answer = predictor.predict({"which": target}, target_model=target)
        assert answer["greeting"] == greeting and answer["echo"] == {"which": target}, answer

    # a third model, copied from elsewhere in S3 after the endpoint is up: no redeploy
    elsewhere = f"s3://{bucket}/{name}/staging/gamma.tar.gz"
    server.client("s3").upload_file(
        str(_greeting_model(tmp_path, "gamma")), bucket, f"{name}/staging/gamma.tar.gz"
    )
    assert mme.add_model(elsewhere, "c.tar.gz") == f"{prefix}c.tar.gz"
    assert sorted(mme.list_models()) == ["a.tar.gz", "b.tar.gz", "c.tar.gz"]
    assert predictor.predict({"which": "c"}, target_model="c.tar.gz")["greeting"] == "gamma"
    assert predictor.predict({"again": 1}, target_model="a.tar.gz")["greeting"] == "alpha"
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
    with pytest.raises(ClientError) as missing:
        predictor.predict({"which": "nothing"}, target_model="d.tar.gz")
    assert missing.value.response["Error"]["Code"] == "ValidationError", missing.value.response
    assert f"{name}/models/d.tar.gz" in missing.value.response["Error"]["Message"]

    predictor.delete_endpoint()
    mme.delete_model()
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    assert not sm.list_models(NameContains=name)["Models"]


def test_pipeline_model_csv_preprocessor_then_json_model(
    sdk_session: Any, sm: Any, server: RunningServer, bucket: str, sklearn_image: str, tmp_path: Path
) -> None:
    from sagemaker.model import Model
    from sagemaker.pipeline import PipelineModel
    from sagemaker.predictor import Predictor
    from sagemaker.sklearn import SKLearnModel

    name = unique("sdk-pipe")
    s3 = server.client("s3")
    s3.upload_file(str(_greeting_model(tmp_path / "pre", "unused")), bucket, f"{name}/pre/model.tar.gz")
    s3.upload_file(str(_greeting_model(tmp_path / "main", "chained")), bucket, f"{name}/main/model.tar.gz")
    source = tmp_path / "src"
    source.mkdir()
    (source / "pre.py").write_text(PREPROCESS)
    (source / "post.py").write_text(POSTPROCESS)

    preprocessor = SKLearnModel(
        model_data=f"s3://{bucket}/{name}/pre/model.tar.gz",
        role=ROLE,
        entry_point="pre.py",
        source_dir=str(source),
        framework_version="1.2-1",
        py_version="py3",
        env=ONE_WORKER,
        sagemaker_session=sdk_session,
    )
    model = Model(
        image_uri=sklearn_image,
        model_data=f"s3://{bucket}/{name}/main/model.tar.gz",
        role=ROLE,
        entry_point="post.py",
        source_dir=str(source),
        env=ONE_WORKER,
        sagemaker_session=sdk_session,
    )
    pipeline = PipelineModel(
        name=name,
        models=[preprocessor, model],
        role=ROLE,
        predictor_cls=Predictor,
        sagemaker_session=sdk_session,
    )
    predictor = pipeline.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=name)
    assert isinstance(predictor, Predictor)

    containers = sm.describe_model(ModelName=name)["Containers"]
    assert len(containers) == 2
    first, second = (container["Environment"] for container in containers)
    assert first["SAGEMAKER_PROGRAM"] == "pre.py" and second["SAGEMAKER_PROGRAM"] == "post.py"
    assert first["SAGEMAKER_SUBMIT_DIRECTORY"].startswith(f"s3://{bucket}/")
    assert first["SAGEMAKER_SUBMIT_DIRECTORY"].endswith("/sourcedir.tar.gz")
    assert second["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code"
    assert containers[1]["ModelDataUrl"] != f"s3://{bucket}/{name}/main/model.tar.gz"  # the SDK's repack

    response = predictor.predict(
        "1,2,3.5", initial_args={"ContentType": "text/csv", "Accept": "application/json"}
    )
    answer = json.loads(response)
    assert answer == {
        "weights": "chained",
        "doubled": 13.0,
        "from": {"values": [1.0, 2.0, 3.5], "sum": 6.5, "by": "pre"},
    }, answer

    predictor.delete_endpoint()
    pipeline.delete_model()
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    assert not sm.list_models(NameContains=name)["Models"]


def test_pipeline_with_network_isolation_and_direct_invocation(
    sdk_session: Any, sm: Any, server: RunningServer, bucket: str, sklearn_image: str, tmp_path: Path
) -> None:
    """enable_network_isolation=True makes SKLearnModel repack its entry_point into the archive
    (no sourcedir.tar.gz to fetch), and CreateModel carries EnableNetworkIsolation. The SDK has no
    InferenceExecutionConfig, so a Direct model is created from the SDK's own container definitions
    (`sagemaker.pipeline_container_def`) with the client, deployed with the session's
    `endpoint_from_production_variants`, and each container reached through the Predictor with
    TargetContainerHostname in `initial_args`."""
    import sagemaker
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.pipeline import PipelineModel
    from sagemaker.predictor import Predictor
    from sagemaker.sklearn import SKLearnModel

    name = unique("sdk-iso")
    s3 = server.client("s3")
    for part, greeting in (("pre", "unused"), ("post", "isolated")):
        s3.upload_file(str(_greeting_model(tmp_path / part, greeting)), bucket, f"{name}/{part}/model.tar.gz")
    source = tmp_path / "src"
    source.mkdir()
    (source / "pre.py").write_text(PREPROCESS)
    (source / "post.py").write_text(POSTPROCESS)

    def models() -> list[Any]:
        return [
            SKLearnModel(
                model_data=f"s3://{bucket}/{name}/{part}/model.tar.gz",
                role=ROLE,
                entry_point=f"{part}.py",
                source_dir=str(source),
                framework_version="1.2-1",
                py_version="py3",
                env=ONE_WORKER,
                enable_network_isolation=True,
                sagemaker_session=sdk_session,
            )
            for part in ("pre", "post")
        ]

    pipeline = PipelineModel(
        name=name,
        models=models(),
        role=ROLE,
        predictor_cls=Predictor,
        enable_network_isolation=True,
        sagemaker_session=sdk_session,
    )
    predictor = pipeline.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=name)
    described = sm.describe_model(ModelName=name)
    assert described["EnableNetworkIsolation"] is True
    assert [c["Environment"]["SAGEMAKER_SUBMIT_DIRECTORY"] for c in described["Containers"]] == [
        "/opt/ml/model/code",
        "/opt/ml/model/code",
    ]
    answer = json.loads(predictor.predict("4,5", initial_args={"ContentType": "text/csv"}))
    assert answer == {
        "weights": "isolated",
        "doubled": 18.0,
        "from": {"values": [4.0, 5.0], "sum": 9.0, "by": "pre"},
    }
    predictor.delete_endpoint()
    pipeline.delete_model()

    direct = unique("sdk-direct")
    containers = sagemaker.pipeline_container_def(models(), instance_type="ml.m5.large")
    for container, hostname in zip(containers, ("pre", "post"), strict=True):
        container["ContainerHostname"] = hostname
    sdk_session.sagemaker_client.create_model(
        ModelName=direct,
        ExecutionRoleArn=ROLE,
        Containers=containers,
        InferenceExecutionConfig={"Mode": "Direct"},
        EnableNetworkIsolation=True,
    )
    sdk_session.endpoint_from_production_variants(
        name=direct, production_variants=[sagemaker.production_variant(direct, "ml.m5.large", 1)]
    )
    predictor = Predictor(direct, sagemaker_session=sdk_session, deserializer=JSONDeserializer())
    pre = predictor.predict("1,2", initial_args={"ContentType": "text/csv", "TargetContainerHostname": "pre"})
    assert pre == {"values": [1.0, 2.0], "sum": 3.0, "by": "pre"}
    post = predictor.predict(
        json.dumps({"sum": 10}),
        initial_args={"ContentType": "application/json", "TargetContainerHostname": "post"},
    )
    assert post == {"weights": "isolated", "doubled": 20, "from": {"sum": 10}}
    predictor.delete_endpoint()
    sm.delete_model(ModelName=direct)
    for endpoint in (name, direct):
        sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint, WaiterConfig=FAST_WAIT)
    assert (
        not sm.list_models(NameContains=name)["Models"] and not sm.list_models(NameContains=direct)["Models"]
    )


HANDLER = """
import json, os

def model_fn(model_dir):
    with open(os.path.join(model_dir, "weights.txt")) as f:
        return f.read().strip()

def predict_fn(data, weights):
    return {"handler": os.environ.get("SAGEMAKER_PROGRAM"), "weights": weights, "input": data}
"""


def _weights_only(path: Path, weights: str) -> Path:
    """A model archive with no code: the handlers come from the SDK's sourcedir.tar.gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.parent / "weights.txt").write_text(weights)
    with tarfile.open(path, "w:gz") as tar:
        tar.add(path.parent / "weights.txt", arcname="weights.txt")
    return path


def test_multi_data_model_of_a_framework_model_with_an_entry_point(
    sdk_session: Any, sm: Any, bucket: str, tmp_path: Path
) -> None:
    """The SDK's documented MME pattern: `MultiDataModel(model=FrameworkModel(entry_point=…))`. The
    framework model uploads sourcedir.tar.gz and puts SAGEMAKER_PROGRAM / SAGEMAKER_SUBMIT_DIRECTORY in
    the container's Environment; every model under the prefix is served by that code, whose own
    archives hold no code. SKLearnPredictor's default serializer is NumPy's, so JSON is passed."""
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.multidatamodel import MultiDataModel
    from sagemaker.serializers import JSONSerializer
    from sagemaker.sklearn import SKLearnModel, SKLearnPredictor

    name = unique("sdk-mme-fw")
    source = tmp_path / "src"
    source.mkdir()
    (source / "handler.py").write_text(HANDLER)
    framework_model = SKLearnModel(
        model_data=None,
        role=ROLE,
        entry_point="handler.py",
        source_dir=str(source),
        framework_version="1.2-1",
        py_version="py3",
        env=ONE_WORKER,
        sagemaker_session=sdk_session,
    )
    mme = MultiDataModel(
        name=name,
        model_data_prefix=f"s3://{bucket}/{name}/",
        model=framework_model,
        sagemaker_session=sdk_session,
    )
    mme.add_model(str(_weights_only(tmp_path / "one" / "model.tar.gz", "one")), "team/one.tar.gz")
    mme.add_model(str(_weights_only(tmp_path / "two" / "model.tar.gz", "two")), "team/two.tar.gz")
    assert sorted(mme.list_models()) == ["team/one.tar.gz", "team/two.tar.gz"]
    predictor = mme.deploy(
        initial_instance_count=1,
        instance_type="ml.m5.large",
        endpoint_name=name,
        serializer=JSONSerializer(),
        deserializer=JSONDeserializer(),
    )
    assert isinstance(predictor, SKLearnPredictor)
    environment = sm.describe_model(ModelName=name)["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_PROGRAM"] == "handler.py"
    assert environment["SAGEMAKER_SUBMIT_DIRECTORY"].endswith("/sourcedir.tar.gz")
    for target in ("one", "two"):
        answer = predictor.predict([1, 2], target_model=f"team/{target}.tar.gz")
        assert answer == {"handler": "handler.py", "weights": target, "input": [1, 2]}, answer
    predictor.delete_endpoint()
    mme.delete_model()
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)


def test_multi_data_model_whose_models_carry_the_entry_point(
    sdk_session: Any, sm: Any, bucket: str, sklearn_image: str, tmp_path: Path
) -> None:
    """`Model(entry_point=…, source_dir=…)` without model_data, as a PyTorchModel for MME is written:
    the SDK repacks nothing and uploads nothing, and sends SAGEMAKER_PROGRAM with
    SAGEMAKER_SUBMIT_DIRECTORY=file://<the notebook's own source_dir>, a path no container can read.
    The inference toolkits load SAGEMAKER_PROGRAM from each model's own code/ then, so each archive
    brings that program (beside an inference.py that must not be the one loaded)."""
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.model import Model
    from sagemaker.multidatamodel import MultiDataModel
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import JSONSerializer

    name = unique("sdk-mme-code")
    source = tmp_path / "src"
    source.mkdir()
    (source / "handler.py").write_text(HANDLER)
    model = Model(
        image_uri=sklearn_image,
        role=ROLE,
        entry_point="handler.py",
        source_dir=str(source),
        env=ONE_WORKER,
        predictor_cls=Predictor,
        sagemaker_session=sdk_session,
    )
    mme = MultiDataModel(
        name=name, model_data_prefix=f"s3://{bucket}/{name}/", model=model, sagemaker_session=sdk_session
    )
    for weights in ("left", "right"):
        archive = build_model_tar(
            tmp_path / weights / "model.tar.gz", files={"weights.txt": weights, "code/handler.py": HANDLER}
        )
        mme.add_model(str(archive), f"{weights}.tar.gz")
    predictor = mme.deploy(
        initial_instance_count=1,
        instance_type="ml.m5.large",
        endpoint_name=name,
        serializer=JSONSerializer(),
        deserializer=JSONDeserializer(),
    )
    environment = sm.describe_model(ModelName=name)["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_PROGRAM"] == "handler.py"
    assert environment["SAGEMAKER_SUBMIT_DIRECTORY"] == f"file://{source}"
    for weights in ("left", "right"):
        answer = predictor.predict({"k": 1}, target_model=f"{weights}.tar.gz")
        assert answer == {"handler": "handler.py", "weights": weights, "input": {"k": 1}}, answer
    predictor.delete_endpoint()
    mme.delete_model()
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
