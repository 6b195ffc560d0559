"""Documentation models of incoming email domains and their mailboxes for the OpenAPI
document; requests are read by ``incoming_email_domains``, not by these models."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class IncomingEmailDomainIn(BaseModel):
    domain: str = Field(min_length=1, max_length=200, description="Unique ignoring case")
    email_status: Literal["normal", "defer", "disabled"]


class IncomingEmailDomainUpdate(BaseModel):
    domain: str | None = Field(default=None, min_length=1, max_length=200)
    email_status: Literal["normal", "defer", "disabled"] | None = None


class IncomingEmailDomain(BaseModel):
    id: int
    type: Literal["incoming_email_domain"]
    domain: str
    email_status: Literal["normal", "defer", "disabled"]


class MailboxIn(BaseModel):
    localpart: str = Field(min_length=1, max_length=64, description="Unique per domain")


class Mailbox(BaseModel):
    id: int
    localpart: str


class ForwardingMailboxIn(BaseModel):
    localpart: str = Field(min_length=1, max_length=64, description="Unique per domain")
    forward_to: list[str] = Field(min_length=1, max_length=100)
    is_wildcard: bool = False


class ForwardingMailbox(BaseModel):
    id: int
    localpart: str
    forward_to: list[str]
    is_wildcard: bool
