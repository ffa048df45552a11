"""CreateModel's rules for multi-container models, and the hostnames their containers get."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.api.errors import ValidationException
from moorage.control.models import check_containers, check_environment_size
from moorage.fleet.pipeline import container_hostnames


def _containers(*hostnames: str | None, **member: Any) -> list[dict[str, Any]]:
    return [{"Image": "i", **({"ContainerHostname": h} if h else {}), **member} for h in hostnames]


def test_direct_needs_every_hostname_and_says_which_are_missing() -> None:
    with pytest.raises(ValidationException) as raised:
        check_containers(_containers("a", None, None), "Direct")
    assert "container(s) 2, 3" in raised.value.message
    check_containers(_containers("a", "b"), "Direct")
    check_containers(_containers(None, None), "Serial")
    check_containers(_containers(None, None), None)


def test_a_pipeline_names_all_of_its_containers_or_none() -> None:
    with pytest.raises(ValidationException) as raised:
        check_containers(_containers("pre", None, "post"), "Serial")
    assert "every container must have one; container(s) 2 " in raised.value.message
    check_containers(_containers("pre", "post"), None)
    check_containers(_containers(None, None, None), None)


def test_the_environments_of_all_containers_are_limited_to_32_kb_combined() -> None:
    """Each map is within its own bounds (100 entries, 1024 bytes a key or value); together they are not."""
    big = {f"VAR_{i:02d}": "x" * 1000 for i in range(11)}  # about 11 KB each
    check_environment_size(_containers("a", "b", Environment=big))
    with pytest.raises(ValidationException) as raised:
        check_environment_size(_containers("a", "b", "c", Environment=big))
    assert "Environment maps of the model's 3 containers are 33198 bytes" in raised.value.message
    assert "32768 bytes (32 KB), all of its containers together" in raised.value.message


def test_hostnames_are_unique() -> None:
    with pytest.raises(ValidationException) as raised:
        check_containers(_containers("x", "y", "x"), None)
    assert "x is given to more than one container" in raised.value.message


def test_at_most_one_multi_model_container() -> None:
    check_containers([*_containers("a", Mode="MultiModel"), *_containers("b")], None)
    with pytest.raises(ValidationException) as raised:
        check_containers(_containers("a", "b", Mode="MultiModel"), None)
    assert "containers 1, 2" in raised.value.message


def test_unnamed_containers_get_their_position_without_clashing_with_given_names() -> None:
    assert container_hostnames(_containers("pre", None, "post")) == ["pre", "container-2", "post"]
    assert container_hostnames(_containers("container-2", None)) == ["container-2", "container-2-2"]
