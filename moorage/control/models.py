"""Model resources: CreateModel / DescribeModel / ListModels / DeleteModel."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select

from moorage.api.errors import ValidationException, already_exists, not_found
from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.locations import LocalLocation
from moorage.artifacts.sources import model_source
from moorage.control.context import Caller
from moorage.control.listing import list_page
from moorage.control.tags import check_tags
from moorage.store import Store
from moorage.store.tables import ModelRow

Params = dict[str, Any]
# the Environment maps of all of a model's containers, combined (ContainerDefinition.Environment)
ENVIRONMENT_LIMIT_BYTES = 32 * 1024


def _load(store: Store, caller: Caller, name: str) -> ModelRow:
    with store.session() as session:
        row = session.get(ModelRow, name)
    if row is None:
        raise ValidationException(not_found("model", caller.arn("model", name)))
    return row


def create_model(store: Store, caller: Caller, params: Params) -> Params:
    name = params["ModelName"]
    if "PrimaryContainer" not in params and not params.get("Containers"):
        raise ValidationException(
            "Either PrimaryContainer or Containers must be specified. Add a PrimaryContainer with "
            "ModelDataUrl pointing at your model.tar.gz."
        )
    if "PrimaryContainer" in params and params.get("Containers"):
        raise ValidationException("Specify either PrimaryContainer or Containers, not both.")
    containers = [params["PrimaryContainer"]] if "PrimaryContainer" in params else params["Containers"]
    for container in containers:
        _check_model_data(container)
    check_environment_size(containers)
    if params.get("Containers"):
        check_containers(params["Containers"], (params.get("InferenceExecutionConfig") or {}).get("Mode"))
    check_tags(params.get("Tags", []))
    arn = caller.arn("model", name)
    spec = {k: v for k, v in params.items() if k != "Tags"}
    with store.session() as session:
        if (existing := session.get(ModelRow, name)) is not None:
            raise ValidationException(already_exists("model", existing.arn))
        session.add(
            ModelRow(name=name, arn=arn, creation_time=time.time(), spec=spec, tags=params.get("Tags", []))
        )
    return {"ModelArn": arn}


def _check_model_data(container: Params) -> None:
    """CreateModel refuses model data that is not there, as AWS does.

    Local paths are checked here; s3:// objects are checked when an endpoint downloads them (a
    request to the object store has no place on the control plane's event loop), and a missing
    object then fails the endpoint with a FailureReason."""
    try:
        source = model_source(container)
    except ArtifactError as exc:
        raise ValidationException(str(exc)) from None
    location = source.location if source is not None else None
    if not isinstance(location, LocalLocation):
        return
    given = container.get("ModelDataUrl") or container["ModelDataSource"]["S3DataSource"]["S3Uri"]
    try:
        found = location.path.exists()
    except OSError as exc:  # a name too long, a directory we may not search
        raise ValidationException(f"Could not read model data at {given}: {exc.strerror or exc}.") from None
    if not found:
        raise ValidationException(f"Could not find model data at {given}.")


def check_containers(containers: list[Params], mode: str | None) -> None:
    """A multi-container model's own rules (docs/pipelines.md); botocore's shape bounds the count at 15."""
    _check_direct_hostnames(containers, mode)
    _check_all_or_no_hostnames(containers)
    _check_unique_hostnames(containers)
    _check_one_multi_model(containers)


def _check_direct_hostnames(containers: list[Params], mode: str | None) -> None:
    """Direct invocation picks a container by its hostname, so every container needs one."""
    if mode != "Direct":
        return
    missing = [str(i) for i, c in enumerate(containers, start=1) if not c.get("ContainerHostname")]
    if missing:
        raise ValidationException(
            "InferenceExecutionConfig Mode Direct requires a ContainerHostname on every container; "
            f"container(s) {', '.join(missing)} (by position in Containers) have none. Give each container "
            "a ContainerHostname, or use Mode Serial."
        )


def _check_all_or_no_hostnames(containers: list[Params]) -> None:
    """ContainerDefinition.ContainerHostname: once one container of a pipeline has a hostname, every
    container must have one (the unnamed ones would otherwise get names that may clash)."""
    missing = [str(i) for i, c in enumerate(containers, start=1) if not c.get("ContainerHostname")]
    if missing and len(missing) < len(containers):
        raise ValidationException(
            "If any container of a model has a ContainerHostname, every container must have one; "
            f"container(s) {', '.join(missing)} (by position in Containers) have none. Give each container "
            "a ContainerHostname, or leave it out of all of them."
        )


def check_environment_size(containers: list[Params]) -> None:
    """ContainerDefinition.Environment: a container's map, and the maps of all containers of a CreateModel
    request combined, are limited to 32 KB (keys and values, as UTF-8)."""
    size = sum(
        len(str(key).encode()) + len(str(value).encode())
        for c in containers
        for key, value in (c.get("Environment") or {}).items()
    )
    if size > ENVIRONMENT_LIMIT_BYTES:
        several = f"maps of the model's {len(containers)} containers are"
        whose = "map of the model's container is" if len(containers) == 1 else several
        raise ValidationException(
            f"The Environment {whose} {size} bytes (keys and values, combined); the limit for a model is "
            f"{ENVIRONMENT_LIMIT_BYTES} bytes (32 KB), all of its containers together. Shorten or remove "
            "environment variables."
        )


def _check_unique_hostnames(containers: list[Params]) -> None:
    names = [c["ContainerHostname"] for c in containers if c.get("ContainerHostname")]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValidationException(
            f"ContainerHostname must be unique within a model; {', '.join(repeated)} is given to more than "
            "one container. Give each container a different ContainerHostname."
        )


def _check_one_multi_model(containers: list[Params]) -> None:
    multi = [str(i) for i, c in enumerate(containers, start=1) if c.get("Mode") == "MultiModel"]
    if len(multi) > 1:
        raise ValidationException(
            f"At most one container of a model may have Mode MultiModel; containers {', '.join(multi)} "
            "(by position in Containers) do. Keep Mode MultiModel on one container."
        )


def describe_model(store: Store, caller: Caller, params: Params) -> Params:
    row = _load(store, caller, params["ModelName"])
    return {**row.spec, "ModelArn": row.arn, "CreationTime": row.creation_time}


def delete_model(store: Store, caller: Caller, params: Params) -> Params:
    name = params["ModelName"]
    with store.session() as session:
        row = session.get(ModelRow, name)
        if row is None:
            raise ValidationException(not_found("model", caller.arn("model", name)))
        session.delete(row)
    return {}


def list_models(store: Store, caller: Caller, params: Params) -> Params:
    with store.session() as session:
        rows = session.scalars(select(ModelRow)).all()
    summaries = [{"ModelName": r.name, "ModelArn": r.arn, "CreationTime": r.creation_time} for r in rows]
    page, token = list_page(
        summaries,
        params,
        name_key="ModelName",
    )
    return {"Models": page, "NextToken": token}


def model_specs(store: Store, names: set[str]) -> dict[str, Params]:
    """The stored CreateModel members of each named model (missing names are left out)."""
    with store.session() as session:
        rows = session.scalars(select(ModelRow).where(ModelRow.name.in_(names))).all()
    return {r.name: {**r.spec, "ModelArn": r.arn} for r in rows}
