"""The service's typed refusals: one handler gives each its status code and
FastAPI's own error body; per-snapshot values are made once per snapshot."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service import errors
from service.errors import (
    BadFilter,
    BadSelection,
    InvalidPath,
    NoConcepts,
    NoNeighbours,
    NoPath,
    NoPathGraph,
    ServiceError,
    UnknownImage,
    UnreadableImage,
    UploadTooLarge,
    add_error_handler,
)
from service.state import Derived

CASES: list[tuple[ServiceError, int]] = [
    (UnknownImage(7), 404),
    (UploadTooLarge(1000), 413),
    (UnreadableImage("not an image", unsupported=True), 415),
    (UnreadableImage("truncated", unsupported=False), 400),
    (InvalidPath("image 3 twice"), 422),
    (NoPath("no acceptable path from image 1 to image 2"), 409),
    (NoPathGraph("snapshot x has no path graph"), 409),
    (NoConcepts(), 409),
    (NoNeighbours("x"), 409),
    (BadFilter("no image has label 'x'"), 422),
    (BadSelection("a tour needs two different images"), 422),
    (BadSelection("over the export limit", too_large=True), 413),
]


def _all_types(cls: type[ServiceError]) -> set[type[ServiceError]]:
    return {cls} | {t for sub in cls.__subclasses__() for t in _all_types(sub)}


def test_every_error_type_has_a_status() -> None:
    # A type added without its code in status_of would be a 500 in production.
    assert {type(exc) for exc, _ in CASES} == _all_types(ServiceError) - {ServiceError}
    for exc, status in CASES:
        assert errors.status_of(exc) == status


@pytest.mark.parametrize(("exc", "status"), CASES, ids=lambda c: type(c).__name__)
def test_the_handler_answers_like_an_http_exception(exc: ServiceError, status: int) -> None:
    app = FastAPI()
    add_error_handler(app)

    @app.get("/raise")
    def raising() -> None:
        raise exc

    res = TestClient(app).get("/raise")
    assert res.status_code == status
    assert res.headers["content-type"] == "application/json"
    assert res.json() == {"detail": exc.detail}


def test_unknown_image_names_the_id() -> None:
    assert UnknownImage(42).detail == "no image with id 42"
    assert UploadTooLarge(1_000_000).detail == "upload larger than the 1,000,000 byte limit"


def test_derived_makes_each_value_once_under_concurrency() -> None:
    derived = Derived()
    calls: list[str] = []

    def make(key: str) -> str:
        calls.append(key)
        time.sleep(0.05)  # long enough for every thread to ask while it is made
        return key.upper()

    results: list[str] = []
    threads = [
        threading.Thread(target=lambda k=k: results.append(derived.get(k, lambda: make(k))))
        for k in ["a"] * 6 + ["b"] * 6
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == ["a", "b"]
    assert sorted(results) == ["A"] * 6 + ["B"] * 6


def test_derived_keeps_nothing_from_a_failed_make() -> None:
    derived = Derived()

    def fail() -> str:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        derived.get("k", fail)
    assert derived.get("k", lambda: "made") == "made"
    assert derived.get("k", lambda: "again") == "made"
    assert Derived().get("k", lambda: "other") == "other"  # nothing shared between two
