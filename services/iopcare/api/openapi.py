"""The OpenAPI 3.1 document of the API, generated from the route table and the pydantic models.

Served at ``/openapi.json`` and checked in as ``schemas/openapi.json`` (``iopcare schemas export``
writes it, ``iopcare schemas check`` and the tests fail when it drifts). Deterministic: sorted keys,
no timestamps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from iopcare.api.models import MAX_BATCH, Problem
from iopcare.contract import CONTRACT_VERSION, INBOUND_EVENT_ADAPTER

if TYPE_CHECKING:  # the app builds its document from its route table: it imports this module
    from iopcare.api.app import Route

_REF = "#/components/schemas/{model}"

_STATUS_TEXT = {
    200: "OK",
    304: "Not modified: the page is the one the If-None-Match entity tag names",
    207: "Some events accepted, some rejected (see each result)",
    400: "Bad request",
    401: "Missing, unknown, revoked or expired token",
    403: "The token's role may not call this route",
    404: "No such alert or patient in your caseload",
    409: "The action does not apply to the alert in its current state",
    413: "The body is larger than the route takes (or, on ingest, more than 500 events)",
    415: "A body that is not JSON (Content-Type application/json)",
    422: "Every event was rejected (see each result)",
    429: "Too many failed authentication attempts from this address",
    503: "The broker did not acknowledge some events (status failed): retry those",
}


def _components(routes: Sequence[Route]) -> dict[str, Any]:
    models: list[type[BaseModel]] = [Problem]
    for route in routes:
        models.append(route.response)
        if route.request is not None:
            models.append(route.request)
    unique = list(dict.fromkeys(models))
    _, definitions = models_json_schema([(m, "serialization") for m in unique], ref_template=_REF)
    schemas: dict[str, Any] = definitions.get("$defs", {})
    event_schema = INBOUND_EVENT_ADAPTER.json_schema(ref_template=_REF)
    for name, schema in event_schema.pop("$defs", {}).items():
        if name in schemas and schemas[name] != schema:
            raise RuntimeError(f"OpenAPI component {name!r} is defined twice, differently")
        schemas[name] = schema
    schemas["InboundEvent"] = event_schema
    return schemas


def _error_schema(route: Route, status: int) -> dict[str, Any]:
    """Per-event results (207, 422; 503 when the broker failed some) or a problem."""
    results = {"$ref": _REF.format(model=route.response.__name__)}
    problem = {"$ref": _REF.format(model="Problem")}
    if status in (207, 422):
        return results
    if status == 503 and route.path == "/v1/events":
        return {"oneOf": [results, problem]}
    return problem


def _operation(route: Route) -> dict[str, Any]:
    path_params = [segment[1:-1] for segment in route.path.split("/") if segment.startswith("{")]
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in path_params
    ]
    for query in route.query:
        schema = {"type": "array", "items": query.schema} if query.repeated else query.schema
        parameter: dict[str, Any] = {
            "name": query.name,
            "in": "query",
            "required": False,
            "description": query.description,
            "schema": schema,
        }
        if query.repeated:
            parameter |= {"style": "form", "explode": True}
        parameters.append(parameter)
    responses: dict[str, Any] = {
        "200": {
            "description": _STATUS_TEXT[200],
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=route.response.__name__)}}},
        }
    }
    if 304 in route.statuses:
        parameters.append(
            {
                "name": "If-None-Match",
                "in": "header",
                "required": False,
                "description": "The ETag of the page the caller holds: 304 if it is unchanged.",
                "schema": {"type": "string"},
            }
        )
        responses["200"]["headers"] = {"ETag": {"schema": {"type": "string"}}}
        responses["304"] = {"description": _STATUS_TEXT[304]}
    takes_body = route.request is not None or route.path == "/v1/events"
    for status in sorted({401, 403, 429, *route.statuses, *((413, 415) if takes_body else ())} - {304}):
        responses[str(status)] = {
            "description": _STATUS_TEXT[status],
            "content": {"application/json": {"schema": _error_schema(route, status)}},
        }
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [
            "integrators" if route.path == "/v1/events" else "care team" if route.patient_data else "session"
        ],
        "security": [{"bearer": []}],
        "x-roles": sorted(route.roles),
        "parameters": parameters,
        "responses": responses,
    }
    if route.request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=route.request.__name__)}}},
        }
    elif route.path == "/v1/events":
        event = {"$ref": _REF.format(model="InboundEvent")}
        operation["requestBody"] = {
            "required": True,
            "description": f"One event, or an array of 1 to {MAX_BATCH}; each is validated on its own.",
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            event,
                            {"type": "array", "items": event, "minItems": 1, "maxItems": MAX_BATCH},
                        ]
                    }
                }
            },
        }
    return operation


def _public(summary: str, description: str, tag: str = "operations") -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "tags": [tag],
            "security": [],
            "responses": {"200": {"description": description}},
        }
    }


def openapi_document(routes: Sequence[Route], inbox_assets: Iterable[str]) -> dict[str, Any]:
    """The OpenAPI document of an app with these routes (``iopcare.api.app.openapi`` gives the app's)."""
    paths: dict[str, Any] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    paths["/healthz"] = _public("Liveness", "The process is alive")
    paths["/readyz"] = _public(
        "Readiness", "Postgres and the broker are reachable (503 names the failed check)"
    )
    paths["/openapi.json"] = _public("This document", "The OpenAPI document")
    paths["/inbox"] = _public(
        "The counselor inbox page",
        "An HTML page; it asks for a bearer token and reads and acts through /v1",
        "inbox",
    )
    asset = _public("The inbox page's script or style sheet", "The file", "inbox")
    asset["get"]["parameters"] = [
        {"name": "asset", "in": "path", "required": True, "schema": {"enum": sorted(inbox_assets)}}
    ]
    asset["get"]["responses"]["404"] = {"description": "No such file of the inbox page"}
    paths["/inbox/{asset}"] = asset
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "iopcare API",
            "version": CONTRACT_VERSION,
            "description": (
                "Counselors and supervisors read and act on the alerts of their caseload; clinic systems "
                "post events. Bearer tokens come from `iopcare tokens create`. A patient or alert outside "
                "the caller's caseload is answered 404. Every request touching patient data is audited."
            ),
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(_components(routes).items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


__all__ = ["openapi_document"]
