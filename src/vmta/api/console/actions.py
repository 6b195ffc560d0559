"""What the console's buttons do: end a throttle's backoff (on every node), add or remove a
MailerQ pause or forced error. Each handler takes the form's fields (the CSRF token
already checked and removed) and returns the sentence logged with the credential's name;
bad input raises the same errors as the API (``InvalidRequest``, ``ValidationFailed``),
and nothing is changed then."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.concurrency import run_in_threadpool

from vmta.api.console import pages
from vmta.api.dependencies import ports_of, store_of
from vmta.api.mailerq.delivery_controls import matcher_of, parse_error, parse_pause
from vmta.domain.errors import InvalidRequest
from vmta.store.delivery_controls import ForcedErrorRepository, PauseRepository

MATCHER_FORM = ("pool", "mta", "domain", "ip", "tag")
Action = Callable[[Request, dict[str, str]], Awaitable[str]]


async def _end_backoff(request: Request, fields: dict[str, str]) -> str:
    states = ports_of(request).throttle_states
    raw = fields.get("throttle", "")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 20):
        raise InvalidRequest("throttle must be a throttle id.")
    await states.refresh()
    now = pages.now_of(request)
    found = next((s for s in states.in_backoff(now) if s.id == int(raw)), None)
    if found is None:
        raise InvalidRequest(f"Throttle {raw} is not in backoff.")
    await states.end_everywhere(found.key)
    return f"ended the backoff of throttle {raw}"


def _controls(kind: str, remove: bool) -> Action:
    label = "pause" if kind == "pause" else "forced error"

    async def handler(request: Request, fields: dict[str, str]) -> str:
        store, now = store_of(request), pages.now_of(request)
        if remove:
            m = matcher_of({k: v for k, v in fields.items() if k in MATCHER_FORM}, MATCHER_FORM)
        control = None if remove else (parse_pause if kind == "pause" else parse_error)(fields, now)

        def work() -> bool:
            with store.write() as conn:
                repo = PauseRepository(conn) if kind == "pause" else ForcedErrorRepository(conn)
                if remove:
                    return repo.remove(m) is not None
                repo.put(control)  # type: ignore[arg-type]
                return True

        if not await run_in_threadpool(work):
            raise InvalidRequest(f"No such {label}.")
        matched = control.matcher.as_dict() if control is not None else m.as_dict()
        described = ", ".join(f"{k}={v}" for k, v in matched.items()) or "everything"
        ports_of(request).wake_engine()
        return f"{'removed' if remove else 'set'} {label} ({described})"

    return handler


ACTIONS: dict[str, Action] = {
    "end-backoff": _end_backoff,
    "add-pause": _controls("pause", remove=False),
    "remove-pause": _controls("pause", remove=True),
    "add-error": _controls("error", remove=False),
    "remove-error": _controls("error", remove=True),
}
