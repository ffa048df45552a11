"""Tags on models, endpoint configs and endpoints: AddTags / ListTags / DeleteTags by resource ARN.

Tags given at creation are stored with the resource row; these operations edit that same list, so a
resource's tags go away with it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from moorage.api.errors import ResourceLimitExceeded, ValidationException, not_found
from moorage.control.context import Caller
from moorage.control.listing import paginate
from moorage.store import Store, update_endpoint
from moorage.store.tables import EndpointConfigRow, EndpointRow, ModelRow, TransformJobRow

Params = dict[str, Any]
MAX_TAGS = 50
_RESERVED_PREFIX = "aws:"
Tagged = ModelRow | EndpointConfigRow | EndpointRow | TransformJobRow
_TABLES: dict[str, type[Tagged]] = {
    "model": ModelRow,
    "endpoint-config": EndpointConfigRow,
    "endpoint": EndpointRow,
    "transform-job": TransformJobRow,
}
_KIND_WORDS = {
    "model": "model",
    "endpoint-config": "endpoint configuration",
    "endpoint": "endpoint",
    "transform-job": "transform job",
}


def _resource(session: Session, arn: str) -> Tagged:
    """The row an ARN names; ARNs are matched exactly (SageMaker lower-cases names inside them)."""
    kind = arn.split(":", 5)[-1].partition("/")[0]
    table = _TABLES.get(kind)
    if table is None:
        raise ValidationException(
            f"Cannot tag {arn}: this server keeps tags on models, endpoint configurations, endpoints and "
            "transform jobs (arn:aws:sagemaker:<region>:<account>:model/…, endpoint-config/…, endpoint/… "
            "or transform-job/…)."
        )
    row = cast(Tagged | None, session.scalars(select(table).where(table.arn == arn)).first())
    if row is None:
        raise ValidationException(not_found(_KIND_WORDS[kind], arn))
    return row


def check_tags(tags: list[Params]) -> None:
    """Refuse keys in the namespace AWS keeps for itself (on Create* as on AddTags)."""
    for tag in tags:
        if tag["Key"].lower().startswith(_RESERVED_PREFIX):
            raise ValidationException(
                f"Tag key {tag['Key']!r} uses the reserved prefix '{_RESERVED_PREFIX}'; choose another key."
            )


def add_tags(store: Store, caller: Caller, params: Params) -> Params:
    """Adds tags, replacing the value of a key that is already there (as AWS does)."""
    added = params["Tags"]
    check_tags(added)

    def merge(tags: list[Params]) -> list[Params]:
        merged = {tag["Key"]: tag.get("Value", "") for tag in tags}
        merged.update((tag["Key"], tag.get("Value", "")) for tag in added)
        if len(merged) > MAX_TAGS:
            raise ResourceLimitExceeded(
                f"{params['ResourceArn']} would have {len(merged)} tags; a resource can have at most "
                f"{MAX_TAGS}. Delete some with DeleteTags first."
            )
        return [{"Key": key, "Value": value} for key, value in merged.items()]

    _edit(store, params["ResourceArn"], merge)
    return {"Tags": added}


def list_tags(store: Store, caller: Caller, params: Params) -> Params:
    with store.session() as session:
        tags = list(_resource(session, params["ResourceArn"]).tags)
    page, token = paginate(tags, params, default_max=MAX_TAGS)
    return {"Tags": page, "NextToken": token}


def delete_tags(store: Store, caller: Caller, params: Params) -> Params:
    """Removes the named keys; keys the resource does not have are ignored."""
    doomed = set(params["TagKeys"])
    _edit(store, params["ResourceArn"], lambda tags: [tag for tag in tags if tag["Key"] not in doomed])
    return {}


def _edit(store: Store, arn: str, change: Callable[[list[Params]], list[Params]]) -> None:
    """Replace a resource's tags by `change(tags)`. An endpoint row is written only if no other writer
    changed it since it was read (its version); an overtaken edit is applied again to the row as it is."""
    while True:
        with store.session() as session:
            row = _resource(session, arn)
            tags = change(row.tags)
            if not isinstance(row, EndpointRow):
                row.tags = tags
                return
            if update_endpoint(session, row.name, row.version, tags=tags):
                return
