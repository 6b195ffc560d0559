"""The field rules of request documents written as JSON Schema, for the OpenAPI document.

They say in the schema what ``vmta.domain.config.names``, ``domain_pattern`` and
``domain.bounds`` enforce, so that a schema-driven client (or fuzzer) can tell a valid
request from an invalid one. ECMA-262 regular expressions (JSON Schema's dialect), which
Python's ``re`` reads the same way for these.
"""

from __future__ import annotations

from typing import Any

from vmta.domain.config.bounds import MAX_INTEGER

# Printable ASCII but , # @ (0x2c, 0x23, 0x40); the edges may not be a space.
_NAME_EDGE = r"[!-\"$-+\--?A-~]"
_NAME_INNER = r"[ -\"$-+\--?A-~]"
VIRTUAL_MTA_NAME = rf"^(?! *[+-]?[0-9]+ *$){_NAME_EDGE}(?:{_NAME_INNER}{{0,198}}{_NAME_EDGE})?$"

# Anything but control characters (Unicode category Cc: C0, DEL, C1).
_PRINTABLE = r"[^\u0000-\u001f\u007f-\u009f]"
TEXT = rf"^{_PRINTABLE}*$"
TEMPLATE_NAME = rf"^(?=.*[A-Za-z0-9]){_PRINTABLE}{{1,200}}$"
RELAY_HOSTNAME = rf"^[A-Za-z0-9](?:{_PRINTABLE}{{0,198}}[A-Za-z0-9])?$"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
EHLO_HOSTNAME = rf"^(?!{_IPV4}$){_LABEL}(?:\.{_LABEL})*$"

_DOMAIN_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_DOMAIN = rf"{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*"
DOMAIN_MAX = 253
# The forms of a pattern and the length of what comes before its domain (of 1-253
# characters): example.com, *.example.com, [*.]example.com.
_PATTERN_FORMS = (("", 0), (r"\*\.", 2), (r"\[\*\.\]", 4))


def domain_pattern(*, allow_mx: bool) -> dict[str, Any]:
    """A domain pattern of a routing rule, or (``allow_mx``) of a throttling template,
    where ``mx:`` may come first (in any letter case)."""
    prefixes = [("", 0), ("[Mm][Xx]:", 3)] if allow_mx else [("", 0)]
    return {
        "anyOf": [
            {
                "type": "string",
                "pattern": f"^{mx}{form}{_DOMAIN}$",
                "maxLength": DOMAIN_MAX + mx_length + form_length,
            }
            for mx, mx_length in prefixes
            for form, form_length in _PATTERN_FORMS
        ]
    }


# 1-65535 as at most ten ASCII digits, leading zeros allowed (a form sends text).
PORT_TEXT = (
    r"^(?=[0-9]{1,10}$)0*(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}"
    r"|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
)
PROTOCOL_ANY_CASE = r"^(?:[Nn][Aa][Tt]|[Ss][Oo][Cc][Kk][Ss]|[Hh][Tt][Tt][Pp])$"


def stored_integer(minimum: int = 0, **extra: Any) -> dict[str, Any]:
    """An integer every database can store (``domain.bounds``)."""
    return {"type": "integer", "minimum": minimum, "maximum": MAX_INTEGER, **extra}


def text(pattern: str = TEXT, *, max_length: int = 200, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern, "maxLength": max_length, **extra}


IPV4 = {"type": "string", "format": "ipv4", "description": "IPv4, dotted decimal"}
IP = {"anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]}
