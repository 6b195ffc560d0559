"""MailerQ's message JSON and its ``x-mq-*`` MIME headers, read into what vmta keeps with a
message (``mq_options``).

A MailerQ message is one JSON object per recipient: ``recipient`` and ``mime`` are
required, ``envelope`` is the MAIL FROM address (absent or ``""``: the null reverse-path).
These keys govern delivery:

- ``ips``: the sending IPs the message may leave from (a list, or one address as a string);
  one is chosen at each attempt. ``pool``: a pool whose current members are the sending IPs
  (ignored when ``ips`` is given).
- ``tags``: labels that pauses and forced errors may name (a list, or one string).
- ``maxattempts``: attempts before giving up (0: no limit). ``maxdelivertime``: the time
  after which no attempt is made, as UTC ``YYYY-MM-DD HH:MM:SS`` or a Unix time; a number
  below 10^9 is read as seconds after the message arrived. ``retries``: the delays between
  attempts in seconds (a list, or ``"600,600,1800"``); past its end the last delay repeats.
  ``nextattempt``: the earliest time for the first attempt (same forms as
  ``maxdelivertime``, or an object with that time under ``time``).

Every other key is carried untouched under ``document`` (the JSON without ``mime``), so
that results can carry it back as MailerQ does.

``x-mq-<name>`` headers set the same keys (``x-mq-ip`` → ``ips``, ``x-mq-tag`` → ``tags``,
``x-mq-delayed`` → ``nextattempt``); every ``x-mq-*`` header is removed before delivery.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vmta.domain.config.ip_pool import pool_name_problem
from vmta.domain.errors import ValidationFailed
from vmta.domain.message.dkim_request import (
    DkimRequestRefused,
    MqSignature,
    parse_mq_dkim,
    without_keys,
)
from vmta.domain.message.message_headers import field_name, field_value, split_headers
from vmta.domain.paths.delivery_controls import canonical_address, parse_expire

MQ_HEADER_PREFIX = "x-mq-"
RELATIVE_LIMIT = 1_000_000_000  # a time below this is seconds from arrival, not a Unix time
_ADDRESS = re.compile(r"[^@\s<>]{1,64}@[^@\s<>]{1,253}")
_HEADER_KEYS = {"ip": "ips", "tag": "tags", "delayed": "nextattempt"}


class InvalidMqMessage(ValidationFailed):
    """A MailerQ message (JSON or x-mq-* headers) that breaks a rule; ``messages`` holds
    one clause per problem."""


@dataclass(frozen=True)
class MqMessage:
    recipient: str
    envelope: str  # "" for the null reverse-path <>
    mime: bytes
    options: dict[str, Any]  # what is stored as messages.mq_options
    # MailerQ's ``dkim`` property: used to sign at intake, never stored (keys are secrets).
    dkim: tuple[MqSignature, ...] = ()


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else type(value).__name__
    return repr(text if len(text) <= 50 else text[:47] + "...")


def _time(name: str, value: Any, received_at: float, problems: list[str]) -> float | None:
    if isinstance(value, Mapping) and "time" in value:
        value = value["time"]
    if isinstance(value, bool):
        value = None
    if isinstance(value, int | float):
        return received_at + value if value < RELATIVE_LIMIT else float(value)
    if isinstance(value, str):
        stripped = value.strip()
        if re.fullmatch(r"[0-9]+(\.[0-9]+)?", stripped):
            return _time(name, float(stripped), received_at, problems)
        parsed = parse_expire(stripped)
        if parsed is not None:
            return parsed
    problems.append(
        f"{name} must be a UTC time as YYYY-MM-DD HH:MM:SS, an ISO 8601 time with an"
        f" offset, or a number of seconds, not {_shown(value)}"
    )
    return None


def _list_of_strings(name: str, value: Any, problems: list[str]) -> list[str] | None:
    if isinstance(value, str):
        return [part for part in re.split(r"[,\s]+", value) if part]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    problems.append(f"{name} must be a string or an array of strings")
    return None


def _ips(value: Any, problems: list[str]) -> list[str] | None:
    items = _list_of_strings("ips", value, problems)
    if items is None:
        return None
    canonical: list[str] = []
    for item in items:
        address = canonical_address(item)
        if address is None:
            problems.append(f"ips must hold IPv4 or IPv6 addresses, not {_shown(item)}")
            return None
        if address not in canonical:
            canonical.append(address)
    return canonical


def _attempts(value: Any, problems: list[str]) -> int | None:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 0 <= number <= 1000:
        problems.append(f"maxattempts must be an integer from 0 to 1000, not {_shown(value)}")
        return None
    return number


def _retries(value: Any, problems: list[str]) -> list[float] | None:
    items: list[Any]
    if isinstance(value, str):
        items = [p for p in re.split(r"[,\s]+", value) if p]
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    delays: list[float] = []
    for item in items:
        numeric = isinstance(item, int | float) and not isinstance(item, bool)
        digits = isinstance(item, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", item.strip())
        delay = float(item) if numeric or digits else None
        if delay is None or not 0 < delay <= 30 * 86400:
            problems.append(
                f"retries must be delays in seconds (more than 0, at most 30 days),"
                f" not {_shown(item)}"
            )
            return None
        delays.append(delay)
    if not delays:
        problems.append("retries must hold at least one delay")
        return None
    return delays


def read_options(doc: Mapping[str, Any], received_at: float) -> dict[str, Any]:
    """The delivery options of a MailerQ document (JSON keys, or x-mq-* headers turned
    into keys). Raises InvalidMqMessage naming every problem."""
    problems: list[str] = []
    options: dict[str, Any] = {}
    if doc.get("ips") not in (None, "", []):
        ips = _ips(doc["ips"], problems)
        if ips:
            options["ips"] = ips
    pool = doc.get("pool")
    if pool not in (None, ""):
        if not isinstance(pool, str):
            problems.append(f"pool must be a string, not {_shown(pool)}")
        elif problem := pool_name_problem("pool", pool):
            problems.append(problem)
        else:
            options["pool"] = pool
    if doc.get("tags") not in (None, "", []):
        tags = _list_of_strings("tags", doc["tags"], problems)
        if tags:
            options["tags"] = tags
    if doc.get("maxattempts") not in (None, ""):
        attempts = _attempts(doc["maxattempts"], problems)
        if attempts:
            options["maxattempts"] = attempts
    for name in ("maxdelivertime", "nextattempt"):
        if doc.get(name) not in (None, ""):
            when = _time(name, doc[name], received_at, problems)
            if when is not None:
                options[name] = when
    if doc.get("retries") not in (None, "", []):
        retries = _retries(doc["retries"], problems)
        if retries:
            options["retries"] = retries
    if problems:
        raise InvalidMqMessage(problems)
    document = {k: v for k, v in doc.items() if k != "mime"}
    if "dkim" in document:  # results carry it back, but never its private keys
        document["dkim"] = without_keys(document["dkim"])
    if document:
        options["document"] = document
    return options


def _address(name: str, value: Any, problems: list[str], *, required: bool) -> str:
    if value in (None, ""):
        if required:
            problems.append(f"{name} is required")
        return ""
    if not isinstance(value, str):
        problems.append(f"{name} must be a string, not {_shown(value)}")
        return ""
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if not _ADDRESS.fullmatch(text) or any(ord(c) < 33 for c in text):
        problems.append(f"{name} must be an e-mail address, not {_shown(value)}")
        return ""
    return text


def read_message(doc: Any, received_at: float) -> MqMessage:
    """A MailerQ message JSON document (already decoded)."""
    if not isinstance(doc, Mapping):
        raise InvalidMqMessage(["the message must be a JSON object"])
    problems: list[str] = []
    recipient = _address("recipient", doc.get("recipient"), problems, required=True)
    envelope = _address("envelope", doc.get("envelope"), problems, required=False)
    mime = doc.get("mime")
    body = b""
    if mime in (None, ""):
        problems.append("mime is required")
    elif not isinstance(mime, str):
        problems.append(f"mime must be a string, not {_shown(mime)}")
    else:
        body = mime.encode("utf-8", "surrogateescape")
    options: dict[str, Any] = {}
    try:
        options = read_options(doc, received_at)
    except InvalidMqMessage as exc:
        problems.extend(exc.messages)
    dkim: list[MqSignature] = []
    try:
        dkim = parse_mq_dkim(doc.get("dkim"))
    except DkimRequestRefused as exc:
        problems.extend(exc.messages)
    if problems:
        raise InvalidMqMessage(problems)
    return MqMessage(recipient, envelope, body, options, tuple(dkim))


@dataclass(frozen=True)
class MqHeaders:
    """A message with its x-mq-* headers taken out, and those headers as document keys."""

    data: bytes
    keys: dict[str, Any]


def take_mq_headers(data: bytes) -> MqHeaders:
    """Remove every ``x-mq-*`` header; ``x-mq-tag`` may repeat (each adds a tag), for any
    other the first one counts."""
    split = split_headers(data)
    kept: list[bytes] = []
    keys: dict[str, Any] = {}
    for header in split.headers:
        name = field_name(header)
        if not name.startswith(MQ_HEADER_PREFIX):
            kept.append(header)
            continue
        short = name[len(MQ_HEADER_PREFIX) :]
        key = _HEADER_KEYS.get(short, short)
        value = field_value(header)
        if key == "tags":
            keys.setdefault("tags", []).extend(t for t in re.split(r"[,\s]+", value) if t)
        elif key not in keys and key:
            keys[key] = value
    if len(kept) == len(split.headers):
        return MqHeaders(data, {})
    return MqHeaders(b"".join(kept) + split.rest, keys)
