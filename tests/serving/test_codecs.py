"""Default codecs: in-process round trips, and the default handlers over a real instance."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import scipy.sparse  # type: ignore[import-untyped]

from moorage.serving import codecs, defaults
from moorage.serving.errors import NotAcceptable, RequestError, ServingError, UnsupportedMediaType

from .support import Instance, model_dir


def _npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _sparse() -> bytes:
    buffer = io.BytesIO()
    scipy.sparse.save_npz(buffer, scipy.sparse.csr_matrix(np.eye(3)))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/json", "[[1, 2], [3, 4]]", np.array([[1, 2], [3, 4]])),
        ("application/json; charset=utf-8", b"[1.5]", np.array([1.5])),
        ("text/csv", "1,2,3", np.array([1, 2, 3])),
        ("text/csv", "1,2\n3,4", np.array([[1, 2], [3, 4]])),
        ("application/x-npy", _npy(np.arange(4.0)), np.arange(4.0)),
    ],
)
def test_decode(content_type: str, body: bytes | str, expected: Any) -> None:
    np.testing.assert_array_equal(defaults.input_fn(body, content_type), expected)


def test_decode_csv_mixed_columns_is_structured_like_the_toolkit() -> None:
    decoded = defaults.input_fn("1.5,2,3", "text/csv")
    assert decoded.dtype.names == ("f0", "f1", "f2")


def test_decode_npz_dict_and_sparse() -> None:
    decoded = defaults.input_fn(_npz(a=np.arange(3), b=np.ones(2)), "application/x-npz")
    assert sorted(decoded) == ["a", "b"]
    np.testing.assert_array_equal(decoded["a"], np.arange(3))
    sparse = defaults.input_fn(_sparse(), "application/x-npz")
    assert scipy.sparse.issparse(sparse)
    np.testing.assert_array_equal(sparse.toarray(), np.eye(3))


def test_sparse_npz_without_scipy_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "scipy.sparse", None)  # import fails as in an env without scipy
    with pytest.raises(ServingError, match=r"Add scipy to code/requirements\.txt"):
        defaults.input_fn(_sparse(), "application/x-npz")
    assert sorted(defaults.input_fn(_npz(a=np.arange(3)), "application/x-npz")) == ["a"]


@pytest.mark.parametrize("content_type", ["application/x-npy", "application/x-npz"])
def test_pickles_are_refused(content_type: str) -> None:
    buffer = io.BytesIO()
    objects = np.array([{"a": 1}], dtype=object)
    if content_type == "application/x-npy":
        np.save(buffer, objects, allow_pickle=True)
    else:
        np.savez(buffer, x=objects)
    with pytest.raises(RequestError, match="pickle"):
        defaults.input_fn(buffer.getvalue(), content_type)


@pytest.mark.parametrize(
    ("accept", "prediction", "content_type", "decoded"),
    [
        ("application/json", np.array([[1, 2]]), "application/json", [[1, 2]]),
        (
            "application/json",
            {"x": np.float32(0.5), "n": np.int64(3)},
            "application/json",
            {"x": 0.5, "n": 3},
        ),
        ("text/html, text/csv", np.array([1, 2, 3]), "text/csv", "1\n2\n3\n"),
        ("application/x-npy;q=0.9", np.arange(3), "application/x-npy", np.arange(3)),
        ("application/x-npz", {"a": np.arange(2)}, "application/x-npz", {"a": np.arange(2)}),
    ],
)
def test_encode(accept: str, prediction: Any, content_type: str, decoded: Any) -> None:
    body, chosen = defaults.output_fn(prediction, accept)
    assert chosen == content_type
    if content_type == "text/csv":
        assert body.decode() == decoded
    elif content_type == "application/json":
        assert json.loads(body) == decoded
    else:
        round_trip = codecs.CODECS[content_type].decode(body)
        if isinstance(decoded, dict):
            assert sorted(round_trip) == sorted(decoded)
            round_trip, decoded = round_trip["a"], decoded["a"]
        np.testing.assert_array_equal(round_trip, decoded)


def test_object_array_output_is_pickled_like_the_toolkit() -> None:
    body, chosen = defaults.output_fn({"a": 1}, "application/x-npy")
    assert chosen == "application/x-npy"
    assert np.load(io.BytesIO(body), allow_pickle=True).item() == {"a": 1}


def test_unsupported_types_are_415_and_406() -> None:
    with pytest.raises(UnsupportedMediaType) as unsupported:
        defaults.input_fn(b"x", "image/png")
    assert unsupported.value.status_code == 415
    assert "application/json" in str(unsupported.value) and "input_fn" in str(unsupported.value)
    with pytest.raises(UnsupportedMediaType):
        defaults.input_fn(b"x", None)
    with pytest.raises(NotAcceptable) as not_acceptable:
        defaults.output_fn([1], "image/png, */*")
    assert not_acceptable.value.status_code == 406
    assert "output_fn" in str(not_acceptable.value)


def test_malformed_body_is_400() -> None:
    with pytest.raises(RequestError) as error:
        defaults.input_fn("[1, 2", "application/json")
    assert error.value.status_code == 400


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """An instance with only model_fn: every other handler is a default."""
    model = model_dir(
        tmp_path_factory.mktemp("identity"), "def model_fn(model_dir):\n    return lambda data: data\n"
    )
    instance = Instance(model)
    instance.wait_ready()
    yield instance
    instance.stop()


@pytest.mark.parametrize(
    ("content_type", "body", "accept", "status", "reply_type", "expected"),
    [
        ("application/json", b"[1, 2]", None, 200, "application/json", b"[1, 2]"),
        ("application/json", b"[1, 2]", "*/*", 200, "application/json", b"[1, 2]"),
        ("text/csv", b"1,2,3", "text/csv", 200, "text/csv", b"1\n2\n3\n"),
        ("text/csv", b"1,2\n3,4", "application/json", 200, "application/json", b"[[1, 2], [3, 4]]"),
        (
            "application/x-npy",
            _npy(np.arange(3)),
            "application/x-npy",
            200,
            "application/x-npy",
            _npy(np.arange(3)),
        ),
        ("application/json", b"[1]", "image/png", 406, "text/plain; charset=utf-8", None),
        ("image/png", b"\x89PNG", "application/json", 415, "text/plain; charset=utf-8", None),
        ("application/json", b"\xff\xfe", "application/json", 400, "text/plain; charset=utf-8", None),
    ],
)
def test_default_handlers_over_http(
    identity: Instance,
    content_type: str,
    body: bytes,
    accept: str | None,
    status: int,
    reply_type: str,
    expected: bytes | None,
) -> None:
    if accept is None:
        reply = identity.invoke(body, content_type=content_type)
    else:
        reply = identity.invoke(body, content_type=content_type, accept=accept)
    assert (reply.status, reply.headers["content-type"]) == (status, reply_type), reply.text
    if expected is not None:
        assert reply.body == expected


def test_npz_over_http(identity: Instance) -> None:
    reply = identity.invoke(
        _npz(a=np.arange(3)), content_type="application/x-npz", accept="application/x-npz"
    )
    assert reply.status == 200
    with np.load(io.BytesIO(reply.body), allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["a"], np.arange(3))
