"""The OpenAPI document and the routes the node serves describe each other exactly."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from memmesh.runtime.api import build_api
from memmesh.runtime.openapi import openapi_document


def _served() -> set[tuple[str, str]]:
    node: Any = SimpleNamespace(settings=SimpleNamespace(api_token=None))
    app = build_api(node)
    routes = set()
    for route in app.router.routes():
        if route.method in ("HEAD", "OPTIONS"):
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        routes.add((route.method.lower(), str(path)))
    return routes


def test_every_served_route_is_described_and_every_described_one_is_served() -> None:
    described = {
        (method, path)
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }
    assert described == _served()


def test_path_parameters_are_declared() -> None:
    for path, operations in openapi_document()["paths"].items():
        names = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        for operation in operations.values():
            declared = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"}
            assert declared == names, (path, declared)
