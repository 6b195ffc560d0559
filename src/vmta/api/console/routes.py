"""``/console``: sign-in, the pages, their self-refreshing parts and the operator's actions.

Access: the sign-in page, ``/console/static/*`` and the favicon answer without
credentials; everything else needs a console session (``sessions.py``), opened with the
name and secret of an ``admin`` credential (a ``submit`` one is refused, as on the API).
Failed sign-ins from one client address are slowed as SMTP AUTH's are
(``domain/auth_failures.py``). Every action is logged with the credential's name.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from vmta.api.auth import Authenticator
from vmta.api.console import actions, pages
from vmta.api.console.readings_cache import ReadingsCache
from vmta.api.console.sessions import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    RECHECK,
    SESSION_COOKIE,
    Session,
    Sessions,
    new_token,
    same_token,
)
from vmta.api.dependencies import context_of, store_of
from vmta.domain.auth_failures import FailureDelays
from vmta.domain.errors import PermanentError, TemporaryError
from vmta.store.credentials import CredentialRepository

if TYPE_CHECKING:
    from jinja2 import Environment

log = logging.getLogger("vmta.console")

PREFIX = "/console"
STATIC = Path(__file__).with_name("static")
ASSETS = {
    "console.css": "text/css",
    "console.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}
PAGES = {
    "queue": "Queue",
    "throttles": "Throttles",
    "controls": "Pauses & errors",
    "rates": "Rates",
    "search": "Search",
    "events": "Events",
    "dkim": "DKIM keys",
}
REFRESH_MS = {"rates": 10_000, "search": 5_000, "dkim": 10_000}  # others: every 3 s
# The whole console is its own files: a page may load nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self';"
    " script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none';"
    " base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_console_path(path: str) -> bool:
    """Paths that check the console session themselves instead of an Authorization header."""
    return path == PREFIX or path.startswith(PREFIX + "/") or path == "/favicon.ico"


@functools.cache
def _templates() -> Environment:
    """Built when the first page is shown, not when the API starts: Jinja2 is about 3 MB
    that an API nobody opens the console of never needs (docs/PERFORMANCE.md, "Round 5:
    memory")."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    templates = Environment(
        loader=PackageLoader("vmta.api.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    templates.filters["when"] = pages.when
    templates.filters["iso"] = pages.iso_shown
    return templates


def _html(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    body = _templates().get_template(template).render(pages=PAGES, **values)
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(
    response: Response, request: Request, name: str, value: str, http_only: bool
) -> None:
    response.set_cookie(
        name,
        value,
        path=PREFIX,
        httponly=http_only,
        samesite="strict",
        secure=_secure(request),
    )


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v for k, v in pairs}


class Console:
    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        self.sessions = Sessions()
        self.failures = FailureDelays()
        self.readings = ReadingsCache()

    def session(self, request: Request) -> Session | None:
        return self.sessions.find(request.cookies.get(SESSION_COOKIE), time.monotonic())

    async def still_valid(self, request: Request, session: Session) -> bool:
        """The credential still exists with the admin scope (looked up now and then)."""
        now = time.monotonic()
        if now - session.checked < RECHECK:
            return True
        store = store_of(request)

        def look() -> bool:
            with store.read() as conn:
                record = CredentialRepository(conn).by_name(session.name)
            return record is not None and record.scope == "admin"

        if await run_in_threadpool(look):
            session.checked = now
            return True
        self.sessions.close_all_of(session.name)
        return False

    async def sign_in(self, request: Request, name: str, secret: str) -> str | None:
        """The credential's name when ``name`` and ``secret`` prove an admin credential;
        else None, after the wait the client's earlier failures call for."""
        client = request.client.host if request.client else "unknown"
        delay = self.failures.delay(client, time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)  # before the check: a fast answer says nothing
        principal = None
        if name and secret and len(name) <= 200 and len(secret) <= 1000:
            principal = await run_in_threadpool(self.authenticator.check_password, name, secret)
        if principal is None or principal.scope != "admin":
            self.failures.failed(client, time.monotonic())
            why = "wrong name or secret" if principal is None else "a submit credential"
            log.warning("console sign-in refused for %r from %s: %s", name[:200], client, why)
            return None
        self.failures.succeeded(client)
        log.info("console sign-in: %s from %s", principal.name, client)
        return principal.name


def _sign_in_page(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    token = request.cookies.get(CSRF_COOKIE) or new_token()
    response = _html("sign_in.html", status, csrf=token, error=error, name="admin")
    _set_cookie(response, request, CSRF_COOKIE, token, http_only=False)
    return response


def _console(request: Request) -> Console:
    # Read per request, not captured when the routes are built: the routes do not depend
    # on what the application serves from (api/app.py, build_app).
    return context_of(request).console


def router() -> APIRouter:
    api = APIRouter(prefix=PREFIX, include_in_schema=False)

    async def signed_in(request: Request) -> Session | None:
        console = _console(request)
        session = console.session(request)
        if session is None or not await console.still_valid(request, session):
            return None
        return session

    def csrf_ok(request: Request, session: Session, form: dict[str, str]) -> bool:
        given = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
        return same_token(given, session.csrf)

    @api.get("")
    async def home(request: Request) -> Response:
        session = await signed_in(request)
        if session is None:
            return _sign_in_page(request)
        return await show(request, session, "queue")

    @api.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        form = await _form(request)
        expected = request.cookies.get(CSRF_COOKIE)
        if expected is None or not same_token(form.get(CSRF_FIELD), expected):
            return _sign_in_page(request, "The form expired; please sign in again.", 403)
        console = _console(request)
        name = await console.sign_in(request, form.get("name", ""), form.get("secret", ""))
        if name is None:
            return _sign_in_page(
                request, "Sign-in refused: wrong name or secret, or not an admin credential.", 401
            )
        token, session = console.sessions.open(name, time.monotonic())
        response = RedirectResponse(PREFIX, status_code=303, headers=SECURITY_HEADERS)
        _set_cookie(response, request, SESSION_COOKIE, token, http_only=True)
        _set_cookie(response, request, CSRF_COOKIE, session.csrf, http_only=False)
        return response

    @api.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        session = await signed_in(request)
        form = await _form(request)
        if session is not None:
            if not csrf_ok(request, session, form):
                return HTMLResponse("CSRF token missing or wrong.", 403, headers=SECURITY_HEADERS)
            log.info("console sign-out: %s", session.name)
            _console(request).sessions.close(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse(PREFIX, status_code=303, headers=SECURITY_HEADERS)
        response.delete_cookie(SESSION_COOKIE, path=PREFIX)
        return response

    @api.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in ASSETS:
            return HTMLResponse("Not found.", 404, headers=SECURITY_HEADERS)
        return FileResponse(
            STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "max-age=300"}
        )

    async def show(request: Request, session: Session, page: str) -> Response:
        query = urlencode(list(request.query_params.multi_items()))
        source = f"{PREFIX}/partials/{page}" + (f"?{query}" if query else "")
        return _html(
            f"page_{page}.html",
            page=page,
            who=session.name,
            csrf=session.csrf,
            source=source,
            every=REFRESH_MS.get(page, 3000),
            params=request.query_params,
        )

    @api.get("/partials/{page}")
    async def partial(page: str, request: Request) -> Response:
        session = await signed_in(request)
        if session is None:
            return HTMLResponse("Signed out.", 401, headers=SECURITY_HEADERS)
        reader = pages.READERS.get(page)
        if reader is None:
            return HTMLResponse("Not found.", 404, headers=SECURITY_HEADERS)
        values = await reader(request)
        return _html(f"part_{page}.html", csrf=session.csrf, **values)

    @api.post("/actions/{action}")
    async def act(action: str, request: Request) -> Response:
        session = await signed_in(request)
        if session is None:
            return HTMLResponse("Signed out.", 401, headers=SECURITY_HEADERS)
        form = await _form(request)
        if not csrf_ok(request, session, form):
            log.warning(
                "console %s by %s refused: CSRF token missing or wrong", action, session.name
            )
            return HTMLResponse("CSRF token missing or wrong.", 403, headers=SECURITY_HEADERS)
        handler = actions.ACTIONS.get(action)
        if handler is None:
            return HTMLResponse("No such action.", 404, headers=SECURITY_HEADERS)
        fields = {k: v.strip() for k, v in form.items() if k != CSRF_FIELD and v.strip()}
        try:
            done = await handler(request, fields)
        except PermanentError as exc:
            messages = getattr(exc, "messages", None) or [str(exc)]
            log.info("console %s by %s refused: %s", action, session.name, "; ".join(messages))
            return HTMLResponse(" ".join(messages), 400, headers=SECURITY_HEADERS)
        except TemporaryError:
            return HTMLResponse(
                "The database is unavailable; try again.", 503, headers=SECURITY_HEADERS
            )
        log.info("console %s by %s: %s", action, session.name, done)
        if request.headers.get(CSRF_HEADER):  # script: the message is the answer
            return HTMLResponse(done, headers=SECURITY_HEADERS)
        back = "throttles" if action == "end-backoff" else "controls"
        return RedirectResponse(f"{PREFIX}/{back}", 303, headers=SECURITY_HEADERS)

    @api.get("/{page}")
    async def page(page: str, request: Request) -> Response:
        if page == "favicon.ico":
            return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")
        session = await signed_in(request)
        if session is None:
            return RedirectResponse(PREFIX, status_code=303, headers=SECURITY_HEADERS)
        if page not in PAGES:
            return HTMLResponse("Not found.", 404, headers=SECURITY_HEADERS)
        return await show(request, session, page)

    return api


def favicon_router() -> APIRouter:
    api = APIRouter(include_in_schema=False)

    @api.get("/favicon.ico")
    async def favicon() -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    return api
