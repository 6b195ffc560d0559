"""GreenArrow's HTTP Submission API, ``POST`` (or ``PUT``) ``/api/v1/send.json``, as on
its vendor page: one message (``message``) or a batch (``messages``) as JSON, injected
through the same intake as SMTP, answered in that API's own format.

- Success: ``{"success": 1, "message_id": "..."}`` for one message; for a batch,
  ``{"success": 1, "attempted": N, "messages": [{"success": 1, "id": ..., "message_id":
  ...} | {"success": 0, "id": ..., "error": "..."}]}`` in the order given. ``success: 1``
  comes only after the message is committed to the spool, as a 250 reply to DATA.
- Failure of the whole request: ``{"success": 0, "error": "..."}`` with 400 (bad JSON or
  document), 401 (credentials), 413 (body over 10 MiB, before decompression), 503 (no
  delivery engine in this process).
- Credentials: ``Authorization`` (Bearer or Basic) as everywhere, or ``username`` and
  ``password`` in the document (the name and secret of a vmta credential).
- ``mtaid`` picks the VirtualMTA as ``X-GreenArrow-MtaID`` does; ``mailclass`` is kept
  with the message as ``X-GreenArrow-MailClass`` is. ``Content-Encoding: gzip`` or
  ``deflate`` bodies are accepted.
"""

from __future__ import annotations

import json
import logging
import time
import zlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from vmta.api.auth import Principal
from vmta.api.dependencies import context_of, ports_of
from vmta.api.errors import CHALLENGE
from vmta.domain.message.arrival import Arrival
from vmta.domain.message.dkim_request import DkimRequestRefused
from vmta.domain.message.submitted_message import SubmissionRefused, build, parse_message
from vmta.domain.paths.mail_loops import TooManyHops

log = logging.getLogger(__name__)

PATH = "/api/v1/send.json"
MAX_BODY = 10 * 1024 * 1024  # GreenArrow's limit, applied before decompression
MAX_INFLATED = 64 * 1024 * 1024
MAX_BATCH = 500
TOP_FIELDS = ("username", "password", "message", "messages")


def _answer(status: int, body: dict[str, Any], **headers: str) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers or None)


def _refused(status: int, error: str) -> JSONResponse:
    extra = {"WWW-Authenticate": CHALLENGE} if status == 401 else {}
    return _answer(status, {"success": 0, "error": error}, **extra)


def _inflate(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise SubmissionRefused(f"Content-Encoding {encoding} is not supported (gzip, deflate)")
    # wbits 47 reads gzip or zlib headers; raw deflate is tried when neither is there.
    for wbits in (47, -15):
        try:
            inflater = zlib.decompressobj(wbits)
            data = inflater.decompress(body, MAX_INFLATED)
            if inflater.unconsumed_tail:
                raise SubmissionRefused("the uncompressed payload is too large")
            return data
        except zlib.error:
            continue
    raise SubmissionRefused(f"the payload is not valid {encoding} data")


def router() -> APIRouter:
    api = APIRouter(tags=["HTTP submission"])

    async def send(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY:
            return _refused(413, f"the payload is over the {MAX_BODY} byte limit")
        if not body:
            return _refused(400, "no data in POST or PUT payload")
        try:
            raw = _inflate(body, request.headers.get("content-encoding", "").strip().lower())
            document = json.loads(raw)
        except SubmissionRefused as exc:
            return _refused(400, str(exc))
        except (ValueError, UnicodeDecodeError):
            return _refused(400, "the payload is not valid JSON")
        if not isinstance(document, dict):
            return _refused(400, "the payload must be a JSON object")
        principal = await _principal(request, document)
        if principal is None:
            return _refused(401, "incorrect username/password")
        unknown = sorted(set(document) - set(TOP_FIELDS))
        if unknown:
            return _refused(400, f"{unknown[0]} is not a known field")
        single, batch = document.get("message"), document.get("messages")
        if (single is None) == (batch is None):
            return _refused(400, "give exactly one of message, messages")
        hooks = ports_of(request).data_plane
        if hooks is None:  # an API-only process (api/ports.py)
            return _refused(503, "this vmta process does not accept mail")
        submit, hostname = hooks.submit, hooks.hostname
        client_ip = request.client.host if request.client else None

        async def one(doc: Any) -> dict[str, Any]:
            client_id = doc.get("id") if isinstance(doc, dict) else None
            try:
                message = parse_message(doc)
                message_id, data = build(message, now=time.time(), hostname=hostname)
            except SubmissionRefused as exc:
                return {"success": 0, "id": client_id, "error": str(exc)}
            arrival = Arrival(
                mail_from=message.envelope_sender,
                recipients=message.recipients,
                data=data,
                client_ip=client_ip,
                helo=None,
                auth_name=principal.name,
                tls=request.url.scheme == "https",
                may_relay=True,  # authenticated with a vmta credential
            )
            try:
                queue_id = await submit(arrival)  # returns once committed to the spool
            except DkimRequestRefused as exc:  # X-GreenArrow-DKIM in its headers
                return {"success": 0, "id": client_id, "error": "; ".join(exc.messages)}
            except TooManyHops as exc:  # a mail loop (domain/paths/mail_loops.py); nothing stored
                return {"success": 0, "id": client_id, "error": str(exc)}
            log.info("HTTP submission %s queued as %s", message_id, queue_id)
            # GreenArrow answers {"success": 1, "message_id": ...}; the queue id is added
            # (one more key) so that /api/messages/{queue_id} can be asked at once.
            return {"success": 1, "id": client_id, "message_id": message_id, "queue_id": queue_id}

        if single is not None:
            result = await one(single)
            status = 200 if result["success"] else 400
            if result.get("id") is None:
                result.pop("id")
            return _answer(status, result)
        if not isinstance(batch, list) or not 1 <= len(batch) <= MAX_BATCH:
            return _refused(400, f"messages must be an array of 1 to {MAX_BATCH} messages")
        results = [await one(doc) for doc in batch]
        return _answer(200, {"success": 1, "attempted": len(results), "messages": results})

    for method in ("POST", "PUT"):  # one operation id each (OpenAPI wants them unique)
        api.add_api_route(
            PATH,
            send,
            methods=[method],
            operation_id=f"http_submission_{method.lower()}",
            summary="GreenArrow HTTP Submission API: send one message or a batch",
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "username": {"type": "string"},
                                    "password": {"type": "string"},
                                    "message": {"type": "object"},
                                    "messages": {
                                        "type": "array",
                                        "items": {"type": "object"},
                                        "minItems": 1,
                                        "maxItems": MAX_BATCH,
                                    },
                                },
                            }
                        }
                    },
                }
            },
            responses={
                200: {
                    "description": "{success: 1, message_id, queue_id} or, for a batch, per message"
                },
                **{code: _REFUSAL for code in (400, 401, 413, 503)},
            },
        )
    return api


# What this API answers when it refuses a request (a 413 from the body limit says only
# "error", as every vmta path does).
_REFUSAL: dict[str, Any] = {
    "description": "{success: 0, error}",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "success": {"type": "integer", "enum": [0]},
                    "error": {"type": "string"},
                },
            }
        }
    },
}


async def _principal(request: Request, document: dict[str, Any]) -> Principal | None:
    """Credentials from the Authorization header, else from the document."""
    authenticator = context_of(request).authenticator
    header = request.headers.get("authorization")
    if header:
        return await run_in_threadpool(authenticator.check, header)
    name, secret = document.get("username"), document.get("password")
    if not isinstance(name, str) or not isinstance(secret, str) or not name or not secret:
        return None
    return await run_in_threadpool(authenticator.check_password, name, secret)
