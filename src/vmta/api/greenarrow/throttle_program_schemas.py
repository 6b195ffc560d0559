"""Documentation models of throttle programs for the OpenAPI document;
requests are read by ``throttle_program_document``, not by these models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class BackoffValue(BaseModel):
    mode: Literal["percent", "fixed"] = Field(
        description="percent: of the normal limit; fixed: this value"
    )
    value: int = Field(ge=1, le=2_147_483_647)


class Backoff(BaseModel):
    max_concurrent_connections: BackoffValue
    max_messages_per_hour: BackoffValue


class Triggers(BaseModel):
    failure_rate: int | None = Field(
        default=None, ge=1, le=100, description="% of recent attempts that failed"
    )
    deferral_rate: int | None = Field(
        default=None, ge=1, le=100, description="% of recent attempts deferred"
    )


class ThrottleProgramIn(BaseModel):
    """Required on create: name, backoff, return_after, triggers (at least one rate)."""

    name: str = Field(min_length=1, max_length=200, description="Unique ignoring case")
    backoff: Backoff
    return_after: int = Field(ge=1, description="Seconds in backoff once it begins")
    notify: str | None = Field(default=None, description="An email address, stored only")
    triggers: Triggers


class ThrottleProgram(BaseModel):
    id: int
    name: str
    builtin: bool
    backoff: Backoff
    return_after: int
    notify: str | None
    triggers: Triggers


class ProgramUser(BaseModel):
    type: Literal["ip_address", "throttling_template"]
    id: int
    name: str
