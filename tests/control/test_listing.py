"""list_page: the filtering, sorting and NextToken pagination every List* operation shares."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest

from moorage.api.errors import ValidationException
from moorage.control.listing import Summary, list_page

ITEMS: list[Summary] = [
    {"Name": "alpha-model", "CreationTime": 100.0, "LastModifiedTime": 150.0, "Status": "InService"},
    {"Name": "beta", "CreationTime": 200.0, "LastModifiedTime": 250.0, "Status": "Failed"},
    {"Name": "gamma-alpha", "CreationTime": 300.0, "LastModifiedTime": 310.0, "Status": "Creating"},
    {"Name": "delta", "CreationTime": 400.0, "LastModifiedTime": 400.0, "Status": "InService"},
]
SORT_KEYS = {
    "Name": lambda s: s["Name"],
    "CreationTime": lambda s: s["CreationTime"],
    "Status": lambda s: s["Status"],
}


def _names(params: dict[str, Any], *, status_key: str | None = "Status", default_max: int = 10) -> list[str]:
    page, token = list_page(
        ITEMS, params, name_key="Name", sort_keys=SORT_KEYS, status_key=status_key, default_max=default_max
    )
    assert token is None, "these cases fit on one page"
    return [s["Name"] for s in page]


def _token(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).decode()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["delta", "gamma-alpha", "beta", "alpha-model"]),
        ({"NameContains": "alpha"}, ["gamma-alpha", "alpha-model"]),
        ({"NameContains": "BETA"}, ["beta"]),
        ({"NameContains": "zzz"}, []),
        ({"NameContains": ""}, ["delta", "gamma-alpha", "beta", "alpha-model"]),
        ({"CreationTimeAfter": 200.0}, ["delta", "gamma-alpha", "beta"]),
        ({"CreationTimeAfter": 199.9996}, ["delta", "gamma-alpha", "beta"]),
        ({"CreationTimeBefore": 300.0}, ["beta", "alpha-model"]),
        ({"CreationTimeAfter": 100.0, "CreationTimeBefore": 400.0}, ["gamma-alpha", "beta", "alpha-model"]),
        ({"CreationTimeAfter": datetime.fromtimestamp(250, UTC)}, ["delta", "gamma-alpha"]),
        ({"CreationTimeBefore": datetime.fromtimestamp(100.5, UTC)}, ["alpha-model"]),
        ({"LastModifiedTimeAfter": 300.0}, ["delta", "gamma-alpha"]),
        ({"LastModifiedTimeBefore": 250.0}, ["alpha-model"]),
        (
            {"LastModifiedTimeAfter": 150.0, "LastModifiedTimeBefore": 400.0},
            ["gamma-alpha", "beta", "alpha-model"],
        ),
        ({"StatusEquals": "InService"}, ["delta", "alpha-model"]),
        ({"StatusEquals": "Deleting"}, []),
        ({"StatusEquals": "InService", "NameContains": "alpha"}, ["alpha-model"]),
        ({"SortOrder": "Ascending"}, ["alpha-model", "beta", "gamma-alpha", "delta"]),
        ({"SortBy": "Name", "SortOrder": "Ascending"}, ["alpha-model", "beta", "delta", "gamma-alpha"]),
        ({"SortBy": "Name"}, ["gamma-alpha", "delta", "beta", "alpha-model"]),
        ({"SortBy": "Nonsense", "SortOrder": "Ascending"}, ["alpha-model", "beta", "gamma-alpha", "delta"]),
        ({"NextToken": ""}, ["delta", "gamma-alpha", "beta", "alpha-model"]),
    ],
    ids=[
        "default-newest-first",
        "name-contains",
        "name-contains-ignores-case",
        "name-contains-nothing",
        "name-contains-empty",
        "created-after-is-inclusive",
        "created-after-at-millisecond-precision",
        "created-before-is-strict",
        "created-window",
        "created-after-datetime",
        "created-before-datetime",
        "modified-after",
        "modified-before-is-strict",
        "modified-window",
        "status-equals",
        "status-equals-nothing",
        "status-and-name",
        "ascending",
        "by-name-ascending",
        "by-name-default-descending",
        "unknown-sort-key-is-creation-time",
        "empty-token-is-first-page",
    ],
)
def test_filters_and_order(params: dict[str, Any], expected: list[str]) -> None:
    """Each request member narrows or orders the listing the way SageMaker documents it."""
    assert _names(params) == expected


def test_status_equals_ignored_without_a_status_member() -> None:
    """Resources without a status (models) ignore StatusEquals rather than filtering everything out."""
    assert _names({"StatusEquals": "InService"}, status_key=None) == [
        "delta",
        "gamma-alpha",
        "beta",
        "alpha-model",
    ]


@pytest.mark.parametrize(("order", "reverse"), [("Ascending", False), ("Descending", True)])
def test_sort_by_status(order: str, reverse: bool) -> None:
    """SortBy Status orders by the status member (the order among equal statuses is left open)."""
    page, _ = list_page(
        ITEMS,
        {"SortBy": "Status", "SortOrder": order},
        name_key="Name",
        sort_keys=SORT_KEYS,
        status_key="Status",
    )
    statuses = [s["Status"] for s in page]
    assert statuses == sorted(statuses, reverse=reverse)
    assert len(statuses) == len(ITEMS)


@pytest.mark.parametrize(
    ("params", "default_max", "pages"),
    [
        ({"MaxResults": 3}, 10, [["delta", "gamma-alpha", "beta"], ["alpha-model"]]),
        ({"MaxResults": 1}, 10, [["delta"], ["gamma-alpha"], ["beta"], ["alpha-model"]]),
        ({"MaxResults": 4}, 10, [["delta", "gamma-alpha", "beta", "alpha-model"]]),
        ({"MaxResults": 100}, 10, [["delta", "gamma-alpha", "beta", "alpha-model"]]),
        ({}, 2, [["delta", "gamma-alpha"], ["beta", "alpha-model"]]),
        (
            {"MaxResults": 1, "SortOrder": "Ascending", "NameContains": "a"},
            10,
            [["alpha-model"], ["beta"], ["gamma-alpha"], ["delta"]],
        ),
        ({"MaxResults": 1, "StatusEquals": "InService"}, 10, [["delta"], ["alpha-model"]]),
        ({"MaxResults": 5, "StatusEquals": "Deleting"}, 10, [[]]),
    ],
    ids=[
        "three-then-one",
        "one-at-a-time",
        "exact-fit-has-no-token",
        "more-than-enough",
        "default-max",
        "with-filters-and-order",
        "with-status",
        "empty",
    ],
)
def test_pagination(params: dict[str, Any], default_max: int, pages: list[list[str]]) -> None:
    """Following NextToken with the same filters walks every item once; the last page has no token."""
    seen: list[list[str]] = []
    request = dict(params)
    while True:
        page, token = list_page(
            ITEMS, request, name_key="Name", sort_keys=SORT_KEYS, status_key="Status", default_max=default_max
        )
        seen.append([s["Name"] for s in page])
        if token is None:
            break
        assert isinstance(token, str) and token
        request = {**params, "NextToken": token}
        assert len(seen) <= len(ITEMS), "pagination does not end"
    assert seen == pages


def test_token_resumes_after_the_last_item_seen() -> None:
    """Items created or deleted between pages neither repeat nor push others out of the listing."""
    first, token = list_page(ITEMS, {"MaxResults": 2}, name_key="Name", sort_keys=SORT_KEYS)
    assert [s["Name"] for s in first] == ["delta", "gamma-alpha"]
    newer = {"Name": "epsilon", "CreationTime": 500.0, "LastModifiedTime": 500.0, "Status": "Creating"}
    changed = [newer, *ITEMS[:2], ITEMS[3]]  # one created, gamma-alpha (already seen) deleted
    rest, next_token = list_page(
        changed, {"MaxResults": 2, "NextToken": token}, name_key="Name", sort_keys=SORT_KEYS
    )
    assert ([s["Name"] for s in rest], next_token) == (["beta", "alpha-model"], None)


def test_equal_sort_keys_are_not_lost_between_pages() -> None:
    same = [{"Name": f"m{i}", "CreationTime": 7.0} for i in range(5)]
    names: list[str] = []
    params: dict[str, Any] = {"MaxResults": 2}
    while True:
        page, token = list_page(same, params, name_key="Name", sort_keys=SORT_KEYS)
        names += [s["Name"] for s in page]
        if token is None:
            break
        params = {"MaxResults": 2, "NextToken": token}
    assert names == ["m4", "m3", "m2", "m1", "m0"]


def test_token_from_another_sort_order_is_refused() -> None:
    _, token = list_page(ITEMS, {"MaxResults": 1, "SortBy": "Name"}, name_key="Name", sort_keys=SORT_KEYS)
    with pytest.raises(ValidationException, match="another sort order"):
        list_page(ITEMS, {"MaxResults": 1, "NextToken": token}, name_key="Name", sort_keys=SORT_KEYS)


def test_input_is_not_modified() -> None:
    """Sorting and filtering work on a copy; the caller's list keeps its order."""
    before = [dict(s) for s in ITEMS]
    list_page(ITEMS, {"SortBy": "Name", "NameContains": "a"}, name_key="Name", sort_keys=SORT_KEYS)
    assert before == ITEMS


@pytest.mark.parametrize(
    "token",
    [
        "not a token!",
        "@@@@",
        _token(b"not json"),
        _token(b"\xff\xfe"),
        _token(b"{}"),
        _token(b"[1]"),
        _token(b"1"),
        _token(b"null"),
        _token(b'"offset"'),
        _token(b'{"offset": -1}'),
        _token(b'{"offset": "2"}'),
        _token(b'{"offset": 1.5}'),
        _token(b'{"offset": null}'),
        _token(b'{"offset": true}'),
        _token(b'{"after": null}'),
        _token(b'{"after": [["CreationTime", true], "not a number", "x"]}'),
        _token(b'{"after": [["CreationTime", true], 1.0]}'),
        _token(b'{"after": [["CreationTime", true], NaN, "x"]}'),
    ],
)
def test_bad_token_is_validation_exception(token: str) -> None:
    """A NextToken that list_page did not issue answers ValidationException, never a crash or a page."""
    with pytest.raises(ValidationException, match="Invalid pagination token"):
        list_page(ITEMS, {"NextToken": token}, name_key="Name", sort_keys=SORT_KEYS)
