"""OpenAPI description of the real request and response shapes.

Handlers read and write raw JSON (the contract's strict types and "every problem at once"
rule do not fit a model validator), so the shapes are described by pydantic models and
JSON Schemas that exist only for this document, registered as components by ``install``.

The document says exactly what each operation answers: ``install`` adds to every
operation the errors every request can meet (400 malformed, 401 credentials, 404, 405,
413 body too large, 503 database unavailable) in its family's format, and drops the 422
FastAPI would declare for validation vmta never lets FastAPI do.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

_REF = "#/components/schemas/{model}"
_registered: list[type[BaseModel]] = []


def ref(model: type[BaseModel]) -> dict[str, str]:
    if model not in _registered:
        _registered.append(model)
    return {"$ref": _REF.format(model=model.__name__)}


GA_ERROR = {
    "type": "object",
    "required": ["success", "data", "error_code", "error_messages"],
    "properties": {
        "success": {"type": "boolean", "const": False},
        "data": {"type": "null"},
        "error_code": {
            "type": "string",
            "enum": [
                "invalid_request",
                "validation_failed",
                "unauthorized",
                "not_found",
                "service_unavailable",
                "internal_error",
            ],
        },
        "error_messages": {"type": "array", "items": {"type": "string"}},
    },
}

PAGINATION = {
    "type": "object",
    "properties": {
        "page": {"type": "integer"},
        "per_page": {"type": "integer"},
        "num_pages": {"type": "integer"},
        "num_records": {"type": "integer"},
        "next_page_token": {"type": ["string", "null"]},
    },
}


def _envelope(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["success", "data", "error_code", "error_messages"],
        "properties": {
            "success": {"type": "boolean", "const": True},
            "data": data,
            "error_code": {"type": "null"},
            "error_messages": {"type": "null"},
        },
    }


def envelope_responses(
    key: str | None,
    schema: type[BaseModel] | None = None,
    *,
    list_of: bool = False,
    item: dict[str, Any] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a GreenArrow route: the success envelope and the error envelope."""
    if key is None:
        data: dict[str, Any] = {"type": "object", "maxProperties": 0}
    elif list_of:
        entry = item or {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
        }
        data = {
            "type": "object",
            "properties": {key: {"type": "array", "items": entry}, "pagination": PAGINATION},
        }
    else:
        inner = ref(schema) if schema is not None else {"type": "object"}
        data = {"type": "object", "properties": {key: inner}}
    # The error answers are added to every operation by ``install``.
    return {
        200: {
            "description": "Success envelope",
            "content": {"application/json": {"schema": _envelope(data)}},
        },
    }


def request_body(
    key: str, schema: type[BaseModel] | dict[str, Any] | None, *, nullable: bool = False
) -> dict[str, Any]:
    """``openapi_extra=`` describing a wrapped JSON request body ``{key: {...}}``: the
    wrapper key and nothing else."""
    if isinstance(schema, dict):
        inner: dict[str, Any] = schema
    else:
        inner = ref(schema) if schema is not None else {"type": "object"}
    if nullable:
        inner = {"anyOf": [inner, {"type": "null"}]}
    wrapper = {
        "type": "object",
        "required": [key],
        "properties": {key: inner},
        "additionalProperties": False,
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": wrapper}},
        }
    }


def with_query(extra: dict[str, Any], *parameters: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` plus query ``parameters`` (see ``query``)."""
    return {**extra, "parameters": [*extra.get("parameters", ()), *parameters]}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """One optional query parameter."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


PAGE_PARAMETERS = (
    query("page", {"type": "integer", "minimum": 0, "maximum": 10**9}, "0-based page number"),
    query("per_page", {"type": "integer", "minimum": 1, "maximum": 1000}, "records per page"),
    query(
        "page_token",
        {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,2048}$"},
        "next_page_token of the previous page (opaque; wins over page). A token this list"
        " did not write is 400 invalid_request.",
    ),
)


ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one sentence"}},
}
_REASONS = {
    400: "Malformed request, a bad query parameter, or a broken field rule",
    401: "Missing or wrong credentials",
    404: "No such record or path",
    405: "Method not supported on this path",
    413: "Request body larger than 1 MiB",
    503: "The database cannot serve the request now (full or unreachable); retry later",
}
# What every operation may answer, whatever it is: a request can always be malformed at
# the HTTP level, lack credentials, carry too large a body, or meet a database that is
# down. Operations add what is theirs (415 of the MailerQ family) where they are declared.
COMMON_ERRORS = (400, 401, 404, 405, 413, 503)
HEALTH_ERRORS = (405, 413)


def _error_response(path: str, status: int) -> dict[str, Any]:
    from vmta.api.errors import Family, family_of

    schema = GA_ERROR if family_of(path) is Family.GREENARROW else ERROR_SCHEMA
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = {"schema": {"type": "string"}}
    if status == 405:
        headers["Allow"] = {"schema": {"type": "string"}}
    if status == 503:
        headers["Retry-After"] = {"schema": {"type": "string"}}
    response: dict[str, Any] = {
        "description": _REASONS[status],
        "content": {"application/json": {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def _complete(document: dict[str, Any], open_paths: frozenset[str]) -> None:
    """Every operation's error answers, in its family's format; no 422."""
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            public = path in open_paths
            if public:
                operation["security"] = []  # answers without credentials
            for status in HEALTH_ERRORS if public else COMMON_ERRORS:
                responses.setdefault(str(status), _error_response(path, status))
            for parameter in operation.get("parameters", ()):
                if parameter.get("in") == "path" and parameter["name"] in PATH_SCHEMAS:
                    parameter["schema"] = PATH_SCHEMAS[parameter["name"]]


def _link_creates(document: dict[str, Any]) -> None:
    """OpenAPI links (3.1 §4.8.20) from each GreenArrow create to the operations on the
    record it made, so that a client (or a stateful fuzzer) knows where the new id goes:
    ``data.<record>.id`` of the POST answer is the ``record_id`` of GET, PUT and DELETE,
    and of ``/virtual_mtas/{record_id}/used_by`` for the three VirtualMTA types."""
    paths = document.get("paths", {})
    for path, item in paths.items():
        create = item.get("post")
        if create is None or "{" in path or not path.startswith(GREENARROW_PATH):
            continue
        try:
            data = create["responses"]["200"]["content"]["application/json"]["schema"]
            (key,) = data["properties"]["data"]["properties"]
        except (KeyError, ValueError):
            continue
        targets = [path + "/{record_id}"]
        if key in _VIRTUAL_MTA_KEYS:
            targets.append(GREENARROW_PATH + "/virtual_mtas/{record_id}/used_by")
        links: dict[str, Any] = {}
        for target in targets:
            for method, operation in paths.get(target, {}).items():
                if "operationId" in operation:
                    links[f"{method}_{operation['operationId']}"] = {
                        "operationId": operation["operationId"],
                        "parameters": {"record_id": f"$response.body#/data/{key}/id"},
                    }
        if links:
            create["responses"]["200"]["links"] = links


GREENARROW_PATH = "/ga/api/v3/eng"
_VIRTUAL_MTA_KEYS = frozenset({"relay_server", "ip_address", "routing_rule"})

# Path parameters the handlers read as text, described as what they can be.
PATH_SCHEMAS: dict[str, dict[str, Any]] = {
    "record_id": {"type": "integer", "minimum": 1, "maximum": 2_147_483_647},
    "queue_id": {"type": "string", "pattern": "^[0-9A-Za-z]{1,32}$"},
}


def install(app: FastAPI, open_paths: frozenset[str] = frozenset()) -> None:
    """Make ``app.openapi()`` include the documentation models as components, and every
    operation's error answers."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        _, defs = models_json_schema(
            [(model, "validation") for model in _registered], ref_template=_REF
        )
        components = document.setdefault("components", {}).setdefault("schemas", {})
        components.update(defs.get("$defs", {}))
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic"},
        }
        document["security"] = [{"bearer": []}, {"basic": []}]
        _complete(document, open_paths)
        _link_creates(document)
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]
