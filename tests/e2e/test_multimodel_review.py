"""Defects found reviewing multi-model endpoints, seen through the real server and unchanged boto3."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_multimodel import error_of, invoke, metrics, model_archive, multi_model_endpoint
from tests.support.moorage_server import RunningServer, moorage_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("state"), args=()) as running:
        yield running


def test_cache_disabled_reports_no_loaded_models(server: RunningServer, tmp_path: Path) -> None:
    """ModelCacheSetting Disabled keeps nothing loaded, but LoadedModelCount says 1: the instance reports
    its count before the model it is about to discard has gone (moorage/serving/multimodel/app.py
    `_headers` after `release`), and nothing reports again until the next request."""
    root = tmp_path / "nocache"
    model_archive(root / "m.tar.gz", "uncached")
    sm, smr = server.client("sagemaker"), server.client("sagemaker-runtime")
    endpoint = multi_model_endpoint(sm, root.as_uri() + "/", caching="Disabled")
    assert invoke(smr, endpoint, "m.tar.gz")["model"] == "uncached"
    time.sleep(1)  # the discard after the answer has long finished
    seen = metrics(server, endpoint)
    assert seen["sagemaker_variant_loaded_model_count"] == 0
    assert seen["sagemaker_loaded_model_count"] == 0
    sm.delete_endpoint(EndpointName=endpoint)


def test_cache_disabled_reports_its_unloads(server: RunningServer, tmp_path: Path) -> None:
    """With ModelCacheSetting Disabled every invocation unloads its model, but ModelUnloadingTime only
    learns of unloads made to make room during a load (moorage/serving/multimodel/cache.py `_make_room`
    with the request's Timings); the discard after each answer (`_discard`), like the background
    measurer's evictions and DELETE /models, is never reported, so the metric stays empty."""
    root = tmp_path / "nocache"
    model_archive(root / "m.tar.gz", "uncached")
    sm, smr = server.client("sagemaker"), server.client("sagemaker-runtime")
    endpoint = multi_model_endpoint(sm, root.as_uri() + "/", caching="Disabled")
    for _ in range(3):
        assert invoke(smr, endpoint, "m.tar.gz")["model"] == "uncached"
    seen = metrics(server, endpoint)
    assert seen["sagemaker_model_loading_time_microseconds_count"] == 3
    assert seen["sagemaker_model_unloading_time_microseconds_count"] >= 2
    sm.delete_endpoint(EndpointName=endpoint)


@pytest.mark.parametrize("target", [".", "./"])
def test_a_dot_target_is_a_validation_error(server: RunningServer, tmp_path: Path, target: str) -> None:
    """TargetModel "." names the prefix directory itself. It passes
    both checks (moorage/dataplane/multimodel.py check_target; moorage/artifacts/multimodel.py
    resolve_target allows path == root) and the directory is then loaded in place as a model, so the
    caller gets a ModelError (a failed model_fn) instead of a ValidationError naming the TargetModel."""
    root = tmp_path / "prefix"
    model_archive(root / "a.tar.gz", "alpha")
    model_archive(root / "sub" / "b.tar.gz", "beta")
    sm, smr = server.client("sagemaker"), server.client("sagemaker-runtime")
    endpoint = multi_model_endpoint(sm, root.as_uri() + "/")
    error = error_of(lambda: invoke(smr, endpoint, target))
    assert (error["Code"], error["Status"]) == ("ValidationError", 400), error["Message"]
    assert repr(target) in error["Message"] or target in error["Message"]
    sm.delete_endpoint(EndpointName=endpoint)


def test_a_target_segment_too_long_for_a_file_name_is_a_validation_error(
    server: RunningServer, tmp_path: Path
) -> None:
    """300 bytes is a valid TargetModel (the limit is 1024), but too long for one file name: on a file://
    prefix the instance's lookup raises OSError (moorage/artifacts/multimodel.py `exists`), which
    moorage/serving/multimodel/cache.py `_prepare` and app.py `_invocations` do not catch, so the caller
    gets the model's "internal error" as a ModelError instead of a ValidationError saying the model was
    not found."""
    root = tmp_path / "prefix"
    model_archive(root / "a.tar.gz", "alpha")
    sm, smr = server.client("sagemaker"), server.client("sagemaker-runtime")
    endpoint = multi_model_endpoint(sm, root.as_uri() + "/")
    target = "x" * 300 + ".tar.gz"
    error = error_of(lambda: invoke(smr, endpoint, target))
    assert (error["Code"], error["Status"]) == ("ValidationError", 400), error["Message"]
    assert error["Message"].startswith("Failed to download model data"), error["Message"]
    assert invoke(smr, endpoint, "a.tar.gz")["model"] == "alpha"
    sm.delete_endpoint(EndpointName=endpoint)
