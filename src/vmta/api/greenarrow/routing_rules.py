"""`/ga/api/v3/eng/routing_rules`: being built (see the open issue); no routes yet."""

from __future__ import annotations

from fastapi import APIRouter


def router() -> APIRouter:
    return APIRouter()
