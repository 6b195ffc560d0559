"""Documentation models of GreenArrow records for the OpenAPI document (not validators:
requests are read by the ``*_document`` modules)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class RedirectOut(BaseModel):
    type: str = Field(description="ip_address, relay_server or routing_rule")
    id: int
    name: str


class RefOut(BaseModel):
    id: int
    name: str


class Limits(BaseModel):
    max_concurrent_connections: int = Field(ge=0, description="0 = unlimited")
    max_messages_per_hour: int = Field(ge=0, description="0 = unlimited")


class SourceIp(BaseModel):
    ip: str = Field(description="IPv4, dotted decimal")
    hostname: str = Field(min_length=1, max_length=200, description="EHLO name")


class Destination(BaseModel):
    hostname: str = Field(min_length=1, max_length=200)
    port: int = Field(ge=1, le=65535)
    username: str | None = Field(default=None, max_length=200)
    password: str | None = Field(default=None, max_length=200)


class RelayServer(BaseModel):
    id: int
    name: str
    source_ip: SourceIp
    destination: Destination
    throttle_limits: Limits
    redirect: RedirectOut | None
