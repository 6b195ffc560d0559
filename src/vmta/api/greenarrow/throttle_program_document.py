"""Throttle program documents: request bodies to records and records to responses
(GreenArrow's Throttle Programs page)."""

from __future__ import annotations

import re
from typing import Any

from vmta.api.greenarrow.fields import Fields, JsonObject
from vmta.domain.config.names import template_name_problems
from vmta.domain.limits.throttle_program import (
    BackoffLimits,
    BackoffMode,
    BackoffValue,
    ThrottleProgram,
)

FIELDS = ("id", "name", "builtin", "backoff", "return_after", "notify", "triggers")
READ_ONLY = ("id", "builtin")
BACKOFF_FIELDS = ("max_concurrent_connections", "max_messages_per_hour")
VALUE_FIELDS = ("mode", "value")
TRIGGER_FIELDS = ("failure_rate", "deferral_rate")
MAX_INTEGER = 2_147_483_647  # what every database stores
_MODES = ", ".join(m.value for m in BackoffMode)
# An address in the form RFC 5321 §4.1.2 calls a Mailbox, kept simple: a dot-atom or
# quoted-free local part and a domain of letter-digit-hyphen labels.
_MAILBOX = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


def strip_read_only(doc: JsonObject) -> JsonObject:
    return {k: v for k, v in doc.items() if k not in READ_ONLY}


def _notify_rule(text: str) -> list[str]:
    if len(text) > 254 or not _MAILBOX.match(text):
        return ["must be null or an email address"]
    return []


def parse(doc: JsonObject) -> ThrottleProgram:
    """A complete program from a (merged) document, or ValidationFailed listing every
    broken rule."""
    f = Fields()
    f.known(doc, "", FIELDS)
    name = f.name(doc, rules=template_name_problems)
    backoff = _backoff(f, f.hash(doc, "backoff", ""))
    return_after = f.integer(doc, "return_after", "", minimum=1, maximum=MAX_INTEGER)
    notify = f.string(doc, "notify", "", required=False, nullable=True, rules=_notify_rule)
    failure_rate, deferral_rate = _triggers(f, f.hash(doc, "triggers", ""))
    f.check()
    assert name is not None and backoff is not None and return_after is not None
    return ThrottleProgram(
        name=name,
        backoff=backoff,
        return_after=return_after,
        notify=notify,
        failure_rate=failure_rate,
        deferral_rate=deferral_rate,
    )


def _backoff(f: Fields, obj: JsonObject | None) -> BackoffLimits | None:
    if obj is None:
        return None
    f.known(obj, "backoff", BACKOFF_FIELDS)
    values = [_value(f, f.hash(obj, key, "backoff"), f"backoff.{key}") for key in BACKOFF_FIELDS]
    if values[0] is None or values[1] is None:
        return None
    return BackoffLimits(values[0], values[1])


def _value(f: Fields, obj: JsonObject | None, path: str) -> BackoffValue | None:
    if obj is None:
        return None
    f.known(obj, path, VALUE_FIELDS)

    def mode_rule(text: str) -> list[str]:
        return [] if text in {m.value for m in BackoffMode} else [f"must be one of {_MODES}"]

    mode = f.string(obj, "mode", path, rules=mode_rule)
    value = f.integer(obj, "value", path, minimum=1, maximum=MAX_INTEGER)
    if mode is None or value is None:
        return None
    return BackoffValue(BackoffMode(mode), value)


def _triggers(f: Fields, obj: JsonObject | None) -> tuple[int | None, int | None]:
    if obj is None:
        return None, None
    f.known(obj, "triggers", TRIGGER_FIELDS)
    rates: list[int | None] = []
    for key in TRIGGER_FIELDS:
        if obj.get(key) is None:
            rates.append(None)
            continue
        rates.append(f.integer(obj, key, "triggers", minimum=1, maximum=100))
    if all(obj.get(key) is None for key in TRIGGER_FIELDS):
        f.problem("triggers", "must set failure_rate or deferral_rate (or both)")
    return rates[0], rates[1]


def render(program: ThrottleProgram) -> dict[str, Any]:
    """The full record, exactly as GET returns it."""
    backoff = program.backoff
    return {
        "id": program.id,
        "name": program.name,
        "builtin": program.builtin,
        "backoff": {
            "max_concurrent_connections": _render_value(backoff.max_concurrent_connections),
            "max_messages_per_hour": _render_value(backoff.max_messages_per_hour),
        },
        "return_after": program.return_after,
        "notify": program.notify,
        "triggers": {
            "failure_rate": program.failure_rate,
            "deferral_rate": program.deferral_rate,
        },
    }


def _render_value(value: BackoffValue) -> dict[str, Any]:
    return {"mode": value.mode.value, "value": value.value}
