"""Which keys sign a message (RFC 6376 §3.5 d=, s=), as GreenArrow chooses them.

By default: the default key of the ``Sender:`` domain if it has one, else that of the
``From:`` domain; no such key, no signature. ``X-GreenArrow-DKIM`` directives replace the
default: each names ``d=`` (or the Sender-else-From domain) and a selector (or the
domain's default), or takes the key of another domain (``use_key_from``). A directive that
names no key refuses the message: it is never sent unsigned instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import getaddresses

from vmta.domain.message.dkim_request import HEADER, Directive, DkimRequestRefused
from vmta.domain.message.message_headers import field_name, field_value
from vmta.signing.keyring import KeySet, LoadedKey


class UnknownKey(DkimRequestRefused):
    """A directive names a key the keyring does not hold (perhaps not yet: a key created
    within the keyring's last second)."""


@dataclass(frozen=True)
class Choice:
    domain: str  # d=
    selector: str  # s=
    key: LoadedKey


def author_domain(fields: Sequence[bytes], name: str) -> str | None:
    """The domain of the (last) address of the first ``name`` header field."""
    for field in fields:
        if field_name(field) == name:
            addresses = [a for _, a in getaddresses([field_value(field)]) if "@" in a]
            if addresses:
                return addresses[-1].rsplit("@", 1)[1].strip().rstrip(">").lower() or None
            return None
    return None


def default_choice(fields: Sequence[bytes], keys: KeySet) -> list[Choice]:
    for name in ("sender", "from"):
        domain = author_domain(fields, name)
        if domain is None:
            continue
        key = keys.find(domain, None)
        if key is not None:
            return [Choice(domain, key.selector, key)]
    return []


def directed_choice(
    fields: Sequence[bytes], directives: Sequence[Directive], keys: KeySet
) -> list[Choice]:
    chosen: list[Choice] = []
    seen: set[tuple[str, str, str, str]] = set()
    for directive in directives:
        domain = directive.domain
        if domain is None:  # from_domain: the Sender-else-From domain
            domain = author_domain(fields, "sender") or author_domain(fields, "from")
            if domain is None:
                raise DkimRequestRefused(
                    f"{HEADER} asks for from_domain, but the message has no Sender or From address"
                )
        if directive.key_domain is not None:
            key = keys.find(directive.key_domain, directive.key_selector)
            wanted = directive.key_domain + (
                f"/{directive.key_selector}" if directive.key_selector else " (its default key)"
            )
        else:
            key = keys.find(domain, directive.selector)
            wanted = domain + (
                f"/{directive.selector}" if directive.selector else " (its default key)"
            )
        if key is None:
            raise UnknownKey(f"{HEADER} names a DKIM key that does not exist: {wanted}")
        selector = directive.selector or key.selector
        identity = (key.domain.lower(), key.selector.lower(), domain.lower(), selector.lower())
        if identity in seen and not directive.allow_duplicate:
            continue
        seen.add(identity)
        chosen.append(Choice(domain, selector, key))
    return chosen
