"""``POST /v1/inject`` (MailerQ REST API v1 "Injection"): one MailerQ message JSON object.

JSON only, as MailerQ's page says (a form body is 415). The message goes through the same
intake as SMTP: selector and ``x-mq-*`` headers are taken out of its ``mime``, its
MailerQ options travel with it, and the answer (``{"id": "<queue id>"}``) comes only
after the message is committed to the spool. A bad message is 400 naming every problem,
and nothing is stored.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from vmta.api.dependencies import ports_of
from vmta.api.errors import UnsupportedMediaType
from vmta.api.mailerq import fields as f
from vmta.api.mailerq.body import JSON_TYPE, media_type, read_json
from vmta.api.mailerq.schemas import body_spec, responses
from vmta.domain.errors import InvalidRequest, ValidationFailed
from vmta.domain.message.mq_message import InvalidMqMessage, read_message
from vmta.domain.paths.mail_loops import TooManyHops

PATH = "/v1/inject"
# A whole message travels in the JSON ("mime"): more than the 1 MiB of configuration
# requests, as for GreenArrow's HTTP Submission API (docs/api-mailerq.md).
MAX_BODY = 10 * 1024 * 1024


class InjectionUnavailable(InvalidRequest):
    """No data plane in this process (an API-only test app)."""


_MESSAGE: dict[str, Any] = {
    "type": "object",
    "required": ["recipient", "mime"],
    "properties": {
        "envelope": {"type": "string", "description": "MAIL FROM; absent or empty: <>"},
        "recipient": {"type": "string"},
        "mime": {"type": "string", "description": "the whole message (RFC 5322)"},
        "ips": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "pool": {"type": "string"},
        "tags": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "maxattempts": {"type": "integer", "minimum": 0},
        "maxdelivertime": {"oneOf": [{"type": "string"}, {"type": "number"}]},
        "retries": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "number"}}]},
        "nextattempt": {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "object"}]},
        "queues": {"type": "object"},
    },
    "additionalProperties": True,
}
_QUEUED = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}


def router() -> APIRouter:
    api = APIRouter(tags=["injection (MailerQ v1)"])

    @api.post(
        PATH,
        summary="Queue one MailerQ message (answered after the commit)",
        openapi_extra=body_spec(_MESSAGE, required=True, form=False),
        responses=responses("The message is queued", _QUEUED, codes=(400, 415)),
    )
    async def inject(request: Request) -> JSONResponse:
        kind = media_type(request.headers.get("content-type"))
        if kind != JSON_TYPE:
            raise UnsupportedMediaType(
                f"/v1/inject reads only {JSON_TYPE}, not {kind or 'a body without a type'}."
            )
        document = read_json(await request.body())
        try:
            message = read_message(document, 0.0)
        except InvalidMqMessage as exc:
            raise ValidationFailed(f.sentence(exc.messages)) from None
        hooks = ports_of(request).data_plane
        if hooks is None:  # an API-only process (api/ports.py)
            raise InjectionUnavailable("Injection is not available: no delivery is running.")
        principal = getattr(request.state, "principal", None)
        client = request.client.host if request.client else None
        try:
            queue_id = await hooks.intake.accept_mq(
                message, via="HTTP", client_ip=client, auth_name=getattr(principal, "name", None)
            )
        except InvalidMqMessage as exc:
            raise ValidationFailed(f.sentence(exc.messages)) from None
        except TooManyHops as exc:  # a mail loop (domain/paths/mail_loops.py); nothing stored
            raise ValidationFailed(f"The message is refused: {exc}.") from None
        return JSONResponse({"id": queue_id})

    api.routes.append(f.other_methods_route(PATH, "POST"))
    return api
