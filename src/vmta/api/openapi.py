"""OpenAPI description of the real request and response shapes.

Handlers read and write raw JSON (the contract's strict types and "every problem at once"
rule do not fit a model validator), so the shapes are described by pydantic models that
exist only for this document, registered as components by ``install``.
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
    error = {"description": "Error envelope", "content": {"application/json": {"schema": GA_ERROR}}}
    return {
        200: {
            "description": "Success envelope",
            "content": {"application/json": {"schema": _envelope(data)}},
        },
        400: error,
        401: error,
        404: error,
    }


def request_body(key: str, schema: type[BaseModel] | None) -> dict[str, Any]:
    """``openapi_extra=`` describing a wrapped JSON request body ``{key: {...}}``."""
    inner = ref(schema) if schema is not None else {"type": "object"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "required": [key], "properties": {key: inner}}
                }
            },
        }
    }


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` include the documentation models as components."""

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
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]
