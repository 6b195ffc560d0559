"""What a message asks to be signed with: GreenArrow's ``X-GreenArrow-DKIM`` header and
MailerQ's ``dkim`` message property, read into values. Pure rules; the keys they name are
found by ``vmta.signing.choice``.

``X-GreenArrow-DKIM`` holds one JSON object or an array of 1 to 10, each naming a
signature: ``domain`` (the ``d=`` tag; ``from_domain: true`` stands for the Sender-else-From
domain), ``selector`` (else the domain's default key), ``use_key_from`` (``"domain"`` or
``"domain/selector"``: sign with that key while ``d=``/``s=`` stay as given) and
``allow_duplicate``. Several headers add up; each must be under 4 KB.

MailerQ's ``dkim`` is an object or an array of them, each carrying its own PEM ``key``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vmta.domain.config.dkim_key import domain_problems, selector_problems
from vmta.domain.errors import ValidationFailed
from vmta.domain.message.message_headers import field_name, field_value, split_headers

HEADER = "X-GreenArrow-DKIM"
HEADER_NAME = HEADER.lower()
MAX_SIGNATURES = 10
MAX_HEADER_BYTES = 4096
MAX_MQ_HEADERS = 50  # extra header names one MailerQ signature may sign
_HEADER_LINE = re.compile(rb"(?im)^x-greenarrow-dkim[ \t]*:")
_END_OF_HEADER = re.compile(rb"\r?\n\r?\n")
DIRECTIVE_FIELDS = ("domain", "selector", "from_domain", "use_key_from", "allow_duplicate")
CANONICALIZATIONS = ("simple/simple", "simple/relaxed", "relaxed/simple", "relaxed/relaxed")
MQ_DEFAULT_CANONICALIZATION = "relaxed/simple"  # MailerQ's
MQ_FIELDS = (
    "domain",
    "selector",
    "key",
    "canonicalization",
    "headers",
    "expire",
    "oversign",
    "report",
    "protocols",
)
# RFC 6376 §5.4.1's recommended set, as far as present; From is signed once more than it
# appears (over-signed, §8.15) so that no From can be added after signing.
SIGNED_HEADERS = (
    "from",
    "sender",
    "reply-to",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
)


class DkimRequestRefused(ValidationFailed):
    """A signing request that cannot be honoured; ``messages`` never hold key material."""


@dataclass(frozen=True)
class Directive:
    """One signature an ``X-GreenArrow-DKIM`` header asks for."""

    domain: str | None  # None with from_domain
    selector: str | None
    from_domain: bool = False
    key_domain: str | None = None  # use_key_from
    key_selector: str | None = None
    allow_duplicate: bool = False


@dataclass(frozen=True)
class MqSignature:
    """One signature of MailerQ's ``dkim`` property, with its own key (PEM)."""

    domain: str
    selector: str
    key_pem: str
    header_canon: str
    body_canon: str
    headers: tuple[str, ...] = ()
    expire: int | None = None  # x= (Unix time)
    oversign: bool = False
    report: bool = False

    def __repr__(self) -> str:  # never the key
        return f"MqSignature(domain={self.domain!r}, selector={self.selector!r})"


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _directive(item: Any, where: str, problems: list[str]) -> Directive | None:
    if not isinstance(item, dict):
        problems.append(f"{where} must be a JSON object")
        return None
    unknown = sorted(set(item) - set(DIRECTIVE_FIELDS))
    if unknown:
        problems.append(f"{where} has unknown fields: {', '.join(unknown)}")
    from_domain = item.get("from_domain", False)
    allow_duplicate = item.get("allow_duplicate", False)
    for name, flag in (("from_domain", from_domain), ("allow_duplicate", allow_duplicate)):
        if not isinstance(flag, bool):
            problems.append(f"{where}.{name} must be true or false")
    domain = item.get("domain")
    if domain is None and from_domain is not True:
        problems.append(f"{where}.domain is missing (or give from_domain: true)")
    elif domain is not None and (not isinstance(domain, str) or domain_problems(domain)):
        problems.append(f"{where}.domain is not a domain name: {_text(domain)}")
    selector = item.get("selector")
    if selector is not None and (not isinstance(selector, str) or selector_problems(selector)):
        problems.append(f"{where}.selector is not a selector: {_text(selector)}")
    key_domain = key_selector = None
    use = item.get("use_key_from")
    if use is not None:
        parts = use.split("/") if isinstance(use, str) else []
        if (
            len(parts) not in (1, 2)
            or domain_problems(parts[0])
            or (len(parts) == 2 and selector_problems(parts[1]))
        ):
            problems.append(
                f'{where}.use_key_from must be "domain" or "domain/selector", not {_text(use)}'
            )
        else:
            key_domain = parts[0]
            key_selector = parts[1] if len(parts) == 2 else None
        if selector is None:
            problems.append(f"{where}.selector is missing (it is required with use_key_from)")
    if problems:
        return None
    return Directive(
        domain=domain if isinstance(domain, str) else None,
        selector=selector,
        from_domain=from_domain is True and domain is None,
        key_domain=key_domain,
        key_selector=key_selector,
        allow_duplicate=allow_duplicate is True,
    )


def parse_directives(values: Sequence[str]) -> list[Directive]:
    """The signatures the ``X-GreenArrow-DKIM`` header values (unfolded) ask for, in
    order; raises DkimRequestRefused naming the problem."""
    directives: list[Directive] = []
    for number, value in enumerate(values, start=1):
        where = HEADER if len(values) == 1 else f"{HEADER} #{number}"
        if len(value.encode("utf-8", "surrogateescape")) >= MAX_HEADER_BYTES:
            raise DkimRequestRefused(f"{where} must be shorter than 4 KB")
        try:
            parsed = json.loads(value)
        except ValueError:
            raise DkimRequestRefused(f"{where} is not valid JSON") from None
        items = parsed if isinstance(parsed, list) else [parsed]
        if isinstance(parsed, list) and not 1 <= len(parsed) <= MAX_SIGNATURES:
            raise DkimRequestRefused(
                f"{where} must be an object or an array of 1 to {MAX_SIGNATURES} objects"
            )
        problems: list[str] = []
        for index, item in enumerate(items):
            spot = where if not isinstance(parsed, list) else f"{where}[{index}]"
            found = _directive(item, spot, problems)
            if found is not None:
                directives.append(found)
        if problems:
            raise DkimRequestRefused(problems)
    if len(directives) > MAX_SIGNATURES:
        raise DkimRequestRefused(f"{HEADER} asks for more than {MAX_SIGNATURES} signatures")
    return directives


# ---- MailerQ's dkim property ---------------------------------------------------------


def _mq_expire(value: Any, where: str, problems: list[str]) -> int | None:
    if value in (None, ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        for form in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
            try:
                parsed = datetime.strptime(value.strip(), form)
            except ValueError:
                continue
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return int(parsed.timestamp())
    problems.append(f"{where}.expire must be a UTC time as YYYY-MM-DD HH:MM:SS")
    return None


def _mq_headers(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    if value in (None, "", []):
        return ()
    names = value.split(":") if isinstance(value, str) else value
    if (
        not isinstance(names, list)
        or len(names) > MAX_MQ_HEADERS
        or not all(
            isinstance(n, str)
            and n.strip()
            and all(33 <= ord(c) <= 126 and c != ":" for c in n.strip())
            for n in names
        )
    ):
        problems.append(
            f"{where}.headers must be an array of at most {MAX_MQ_HEADERS} header names"
        )
        return ()
    return tuple(n.strip().lower() for n in names)


def _mq_signature(item: Any, where: str, problems: list[str]) -> MqSignature | None:
    if not isinstance(item, dict):
        problems.append(f"{where} must be an object")
        return None
    before = len(problems)
    unknown = sorted(set(item) - set(MQ_FIELDS))
    if unknown:
        problems.append(f"{where} has unknown fields: {', '.join(unknown)}")
    domain, selector, key = item.get("domain"), item.get("selector"), item.get("key")
    if not isinstance(domain, str) or domain_problems(domain):
        problems.append(f"{where}.domain must be a domain name")
    if not isinstance(selector, str) or selector_problems(selector):
        problems.append(f"{where}.selector must be a selector (letters, digits, dashes, dots)")
    if not isinstance(key, str) or "PRIVATE KEY-----" not in key:
        problems.append(f"{where}.key must be a PEM private key")
    canon = item.get("canonicalization", MQ_DEFAULT_CANONICALIZATION)
    if canon not in CANONICALIZATIONS:
        problems.append(f"{where}.canonicalization must be one of {', '.join(CANONICALIZATIONS)}")
        canon = MQ_DEFAULT_CANONICALIZATION
    headers = _mq_headers(item.get("headers"), where, problems)
    expire = _mq_expire(item.get("expire"), where, problems)
    flags = {}
    for name in ("oversign", "report"):
        flag = item.get(name, False)
        if not isinstance(flag, bool):
            problems.append(f"{where}.{name} must be true or false")
        flags[name] = flag is True
    protocols = item.get("protocols")
    if protocols is not None and protocols != ["dkim"]:
        problems.append(f'{where}.protocols must be ["dkim"]: vmta does not sign ARC (RFC 8617)')
    if len(problems) > before:
        return None
    assert isinstance(domain, str) and isinstance(selector, str) and isinstance(key, str)
    header_canon, body_canon = str(canon).split("/")
    return MqSignature(
        domain=domain,
        selector=selector,
        key_pem=key,
        header_canon=header_canon,
        body_canon=body_canon,
        headers=headers,
        expire=expire,
        oversign=flags["oversign"],
        report=flags["report"],
    )


def parse_mq_dkim(value: Any) -> list[MqSignature]:
    """MailerQ's ``dkim`` property; raises DkimRequestRefused naming every problem (the
    key is never quoted)."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and len(value) > MAX_SIGNATURES:
        raise DkimRequestRefused(f"dkim may hold at most {MAX_SIGNATURES} signatures")
    problems: list[str] = []
    signatures: list[MqSignature] = []
    for index, item in enumerate(items):
        where = "dkim" if not isinstance(value, list) else f"dkim[{index}]"
        found = _mq_signature(item, where, problems)
        if found is not None:
            signatures.append(found)
    if problems:
        raise DkimRequestRefused(problems)
    return signatures


def without_keys(value: Any) -> Any:
    """MailerQ's ``dkim`` property as results may carry it: every ``key`` removed."""
    if isinstance(value, list):
        return [without_keys(item) for item in value]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "key"}
    return value


def header_values(data: bytes) -> list[str]:
    """The (unfolded) values of every ``X-GreenArrow-DKIM`` field of ``data``."""
    # Most messages have none: one search of the header section says so. Only up to the
    # first empty line (RFC 5322 §2.1), where ``split_headers`` stops at the latest: the
    # case-insensitive search of a line start cannot skip ahead as a plain find does,
    # and over a whole 100 KB message it cost 380 µs (docs/PERFORMANCE.md, round 5).
    end = _END_OF_HEADER.search(data)
    head = data if end is None else data[: end.start() + 1]
    if _HEADER_LINE.search(head) is None:
        return []
    return [
        field_value(field)
        for field in split_headers(data).headers
        if field_name(field) == HEADER_NAME
    ]
