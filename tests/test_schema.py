"""Schemathesis over every operation of /openapi.json: no 5xx, and every answer is
one the document declares (status code, content type, body schema).

Generated requests, valid and invalid (schemathesis' examples, coverage and
fuzzing phases, seeded), go in process to real apps:

- over the session's real snapshot with no keys: the whole API, admin routes off;
- with an admin key, over a small collection of its own (adding and removing
  images changes it): the admin routes at work;
- with no snapshot published, and with a read key the client does not send: each
  route's refusal (503, 401) must be declared too.

Generated values that are valid but almost never name anything (ids, layouts,
atlas cells, upload bytes) are, half the time, swapped for ones that do, so
successful answers get checked as well as errors; and one known-good request per
operation makes sure each success body is checked on every run.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from indexer.atlas import CELL_SIZES
from indexer.build import build
from indexer.layout import LAYOUTS
from service.app import create_app
from service.settings import Settings

from .conftest import Built, fresh_data_dir, make_collection, sample_images

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
READ, ADMIN = "schema-read-key", "schema-admin-key"
MULTIPART = "multipart/form-data"


def _document() -> dict[str, Any]:
    """The document the app serves at /openapi.json (it depends on no data or key).

    Read at import: schemathesis makes one test per operation when collecting. No
    lifespan runs for this one request, so no snapshot is opened.
    """
    res = TestClient(create_app(Settings(data_dir=Path("/nonexistent")))).get("/openapi.json")
    res.raise_for_status()
    document: dict[str, Any] = res.json()
    return document


schema = schemathesis.openapi.from_dict(_document())
admin_schema = schema.include(tag="admin")


def _images() -> tuple[bytes, bytes]:
    """A real image every test collection has, and one no collection has (a JPEG of
    another one, mirrored)."""
    member, other = (p.read_bytes() for p in sample_images()[:2])
    with Image.open(io.BytesIO(other)) as im:
        buf = io.BytesIO()
        im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(buf, "JPEG")
    return member, buf.getvalue()


MEMBER, STRANGER = _images()
UPLOADS = st.sampled_from([MEMBER, STRANGER])
IDS = st.integers(0, 63)  # catalog ids that every test collection has
ID_LIST = st.lists(IDS, min_size=1, max_size=3).map(lambda ids: ",".join(map(str, ids)))
REAL: dict[str, st.SearchStrategy[Any]] = {
    "image_id": IDS,
    "source": IDS,
    "target": IDS,
    "via": ID_LIST,
    "avoid": ID_LIST,
    "layout": st.sampled_from(LAYOUTS),
    "cell": st.sampled_from(CELL_SIZES),
    "sheet": st.just(0),
    "file": UPLOADS,
    "source_file": UPLOADS,
    "target_file": UPLOADS,
    "files": st.lists(UPLOADS, min_size=1, max_size=2),
}


def _sometimes_real(context: schemathesis.HookContext, values: Any) -> st.SearchStrategy[Any]:
    """Each field of a generated part that REAL knows: as generated, or a real one."""
    if not isinstance(values, dict) or not REAL.keys() & values.keys():
        return st.just(values)
    return st.fixed_dictionaries(
        {
            name: st.one_of(st.just(value), REAL[name]) if name in REAL else st.just(value)
            for name, value in values.items()
        }
    )


for _schema in (schema, admin_schema):
    for _hook in ("flatmap_path_parameters", "flatmap_query", "flatmap_body"):
        _schema.hook(_hook)(_sometimes_real)


UPLOAD_FIELDS = frozenset({"file", "files", "source_file", "target_file"})


def call(case: schemathesis.Case, app: FastAPI, **kwargs: Any) -> schemathesis.Response:
    """case.call_and_validate, with every upload part sent as a file.

    Schemathesis gives a multipart part a filename only when its schema is a plain
    binary string, but FastAPI declares an optional upload (`UploadFile | None`) as
    anyOf [binary, null]: sent without a filename, the part is a form field, which
    FastAPI refuses (422) before the handler runs, so POST /api/path would never get
    an upload through. Bodies of other values are left to schemathesis to encode.
    """
    if case.media_type == MULTIPART and isinstance(case.body, dict):
        parts = []
        for name, value in case.body.items():
            for item in value if isinstance(value, list) else [value]:
                filename = f"{name}.bin" if name in UPLOAD_FIELDS else None
                parts.append((name, (filename, item)))
        if all(isinstance(item, str | bytes) for _, (_, item) in parts):
            kwargs["files"] = parts
    return case.call_and_validate(app=app, checks=kwargs.pop("checks", CHECKS), **kwargs)


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,  # generated per operation, besides the coverage cases
        derandomize=True,  # the same requests every run
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.fixture(scope="module", autouse=True)
def _stop_apps() -> Iterator[None]:
    yield
    shutdown_lifespans()  # schemathesis starts each app's lifespan at its first request


def _app(data_dir: Path, **keys: str) -> FastAPI:
    return create_app(Settings(data_dir=data_dir, reload_interval_s=3600, **keys))


# Each app fixture has a param: pytest 9.2 builds an item's node id from the
# function's name and the call's params, so schemathesis' per-operation items would
# otherwise all get the same id ("[GET /api/stats]" lives only in their name).


@pytest.fixture(scope="module", params=["open"])
def app(built: Built) -> FastAPI:
    return _app(built.data_dir)  # no keys: reads open, admin routes answer their 403


@pytest.fixture(scope="module", params=["admin key"])
def admin_app(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> FastAPI:
    base = tmp_path_factory.mktemp("schema-admin")
    collection = make_collection(base / "collection", photos=0)
    data = fresh_data_dir(base, models_dir)
    build(collection, data, layouts="grid")  # re-indexing after each add or remove stays quick
    return _app(data, read_key=READ, admin_key=ADMIN)


@pytest.fixture(scope="module", params=["no snapshot", "no key"])
def refusing_app(
    request: pytest.FixtureRequest, built: Built, tmp_path_factory: pytest.TempPathFactory
) -> FastAPI:
    if request.param == "no snapshot":
        return _app(tmp_path_factory.mktemp("schema-empty"))
    return _app(built.data_dir, read_key=READ, admin_key=ADMIN)


# ---------------------------------------------------------------- generated


@schema.parametrize()
@_settings(50)
def test_every_operation_conforms(case: schemathesis.Case, app: FastAPI) -> None:
    call(case, app)


@admin_schema.parametrize()
@_settings(10)
def test_admin_operations_conform(case: schemathesis.Case, admin_app: FastAPI) -> None:
    call(case, admin_app, headers={"X-API-Key": ADMIN})


@schema.parametrize()
@_settings(5)
def test_refusals_are_declared(case: schemathesis.Case, refusing_app: FastAPI) -> None:
    # 503 is the designed answer without a snapshot: it must be declared, not absent.
    res = call(case, refusing_app, checks=CHECKS[1:])
    assert res.status_code < 500 or res.status_code == 503, res.text


# ---------------------------------------------------------------- known good

SUCCESSES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/health", {}),
    ("GET", "/api/stats", {}),
    ("GET", "/api/images", {"query": {"offset": 3, "limit": 4}}),
    ("GET", "/api/images/{image_id}", {"path_parameters": {"image_id": 0}}),
    ("GET", "/api/images/{image_id}/similar", {"path_parameters": {"image_id": 0}}),
    ("GET", "/api/images/{image_id}/thumbnail", {"path_parameters": {"image_id": 0}}),
    ("GET", "/api/images/{image_id}/file", {"path_parameters": {"image_id": 0}}),
    ("POST", "/api/search", {"query": {"k": 5}, "body": {"file": STRANGER}}),
    ("POST", "/api/search", {"query": {"q": "cat"}, "body": {"file": STRANGER}}),
    ("GET", "/api/search", {"query": {"q": "dog", "k": 5}}),
    ("GET", "/api/search", {"query": {"q": "qwertyuiop"}}),
    ("GET", "/api/concepts", {"query": {"prefix": "par"}}),
    ("GET", "/api/maps", {}),
    *[
        ("GET", "/api/maps/{layout}", {"path_parameters": {"layout": name}, "query": {"format": f}})
        for name in LAYOUTS
        for f in ("binary", "json")
    ],
    ("GET", "/api/atlas", {}),
    *[
        ("GET", "/api/atlas/{cell}/{sheet}", {"path_parameters": {"cell": cell, "sheet": 0}})
        for cell in CELL_SIZES
    ],
    ("GET", "/api/path", {"query": {"source": 0, "target": 5}}),
    ("GET", "/api/path", {"query": {"source": 0, "target": 5, "via": "9", "max_steps": 3}}),
    ("POST", "/api/path", {"query": {"target": 5}, "body": {"source_file": STRANGER}}),
    ("POST", "/api/path", {"body": {"source_file": STRANGER, "target_file": MEMBER}}),
    ("GET", "/api/labels", {}),
    ("GET", "/api/filter", {"query": {"label": "photos"}}),
    ("GET", "/api/duplicates", {"query": {"min_similarity": 0.8}}),
    ("POST", "/api/export", {"json": {"ids": [0, 5], "format": "csv"}}),
    ("POST", "/api/export", {"json": {"ids": [0, 5], "format": "zip"}}),
    ("POST", "/api/search/like", {"json": {"ids": [0, 5], "negative": [9]}}),
    ("POST", "/api/tour", {"json": {"ids": [0, 5, 9]}}),
]
ADMIN_OPERATIONS = {"POST /api/admin/reload", "POST /api/images", "DELETE /api/images/{image_id}"}


def _good_case(method: str, path: str, kwargs: dict[str, Any]) -> schemathesis.Case:
    kwargs = dict(kwargs)
    media = {"media_type": MULTIPART} if "body" in kwargs else {}
    if "json" in kwargs:
        kwargs["body"] = kwargs.pop("json")
        media = {"media_type": "application/json"}
    return schema[path][method].Case(**kwargs, **media)


def test_known_good_requests_cover_every_operation() -> None:
    labels = {op.ok().label for op in schema.get_all_operations()}
    covered = {f"{method} {path}" for method, path, _ in SUCCESSES} | ADMIN_OPERATIONS
    assert labels == covered, f"operations without a known-good request: {labels - covered}"


def _request_id(method: str, path: str, kwargs: dict[str, Any]) -> str:
    url = path.format(**kwargs.get("path_parameters", {}))
    query = "&".join(f"{k}={v}" for k, v in kwargs.get("query", {}).items())
    body = ",".join(kwargs.get("body", kwargs.get("json", {})))
    return f"{method} {url}" + (f"?{query}" if query else "") + (f" <{body}>" if body else "")


@pytest.mark.parametrize(
    ("method", "path", "kwargs"), SUCCESSES, ids=[_request_id(*r) for r in SUCCESSES]
)
def test_known_good_requests_succeed_as_declared(
    app: FastAPI, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    res = call(_good_case(method, path, kwargs), app)
    assert res.status_code == 200, res.text


def test_admin_calls_succeed_as_declared(admin_app: FastAPI) -> None:
    key = {"X-API-Key": ADMIN}
    body = {"files": [STRANGER], "label": "schema"}
    added = call(_good_case("POST", "/api/images", {"body": body}), admin_app, headers=key)
    assert added.status_code == 201, added.text
    image = {"image_id": added.json()["images"][0]["id"]}
    remove = _good_case("DELETE", "/api/images/{image_id}", {"path_parameters": image})
    assert call(remove, admin_app, headers=key).status_code == 200
    reload = _good_case("POST", "/api/admin/reload", {})
    assert call(reload, admin_app, headers=key).status_code == 200
