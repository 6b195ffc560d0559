"""Documentation models of DKIM keys for the OpenAPI document; requests are read by
``dkim_key_document``, not by these models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from vmta.api.schema_patterns import text

DOMAIN_PATTERN = r"^[A-Za-z0-9.-]{1,200}$"
SELECTOR_PATTERN = r"^[A-Za-z0-9.-]{1,200}$"


class DkimPublicKey(BaseModel):
    name: str = Field(description="<selector>._domainkey.<domain>")
    type: Literal["TXT"]
    value: str = Field(description="k=rsa; p=... (prepend v=DKIM1; when publishing)")


class DkimDns(BaseModel):
    public_key: DkimPublicKey


class DkimKeyMaterial(BaseModel):
    type: Literal["rsa", "ed25519"]
    bits: int = Field(description="RSA: 1024 to 8192; Ed25519: 256")
    private: str = Field(description="PEM private key (single-record answers only)")
    public: str = Field(description="base64 of the DER public key (RSA) or raw 32 bytes")


class DkimKey(BaseModel):
    id: int
    domain: str
    selector: str
    default_for_domain: bool
    key: DkimKeyMaterial
    dns: DkimDns


class DkimKeyRow(BaseModel):
    id: int
    domain: str
    selector: str
    default_for_domain: bool
    key_bits: int


_BITS: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 1024, "maximum": 8192},
        {"type": "string", "pattern": "^[0-9]{1,6}$"},
    ],
    "description": "generate an RSA key of this size (a number or a numeric string)",
}
_PRIVATE: dict[str, Any] = {
    "type": "string",
    "maxLength": 16384,
    "description": "import this PEM private key (PKCS#1 or PKCS#8)",
}


# A GET's record sent back in a PUT: an Ed25519 key shows its own bits, 256.
_BITS_OF_UPDATE: dict[str, Any] = {
    "anyOf": [*_BITS["anyOf"], {"type": "integer", "enum": [256]}],
    "description": "the key's own size (a key's size cannot change); 256 for Ed25519",
}


def key_schema(*, create: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "type": {"type": "string", "enum": ["rsa", "ed25519"]},
        "bits": _BITS if create else _BITS_OF_UPDATE,
        "private": _PRIVATE,
        "public": {"type": "string", "description": "read-only; ignored"},
    }
    return {"type": "object", "properties": properties, "additionalProperties": False}


def record_in(*, create: bool) -> dict[str, Any]:
    """The ``dkim_key`` object of a POST (``create``) or PUT body."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "id": {"description": "read-only; ignored"},
            "domain": text(DOMAIN_PATTERN),
            "selector": text(SELECTOR_PATTERN, description="unique per domain ignoring case"),
            "default_for_domain": {"type": "boolean"},
            "key": key_schema(create=create),
            "dns": {"description": "read-only; ignored"},
        },
        "additionalProperties": False,
    }
    if create:
        schema["required"] = ["domain", "selector", "key"]
    return schema


def request_body(*, create: bool) -> dict[str, Any]:
    """``{"dkim_key": {...}}``; other top-level keys (a .NET client's ``username`` and
    ``password``) are ignored."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["dkim_key"],
                        "properties": {"dkim_key": record_in(create=create)},
                    }
                }
            },
        }
    }
