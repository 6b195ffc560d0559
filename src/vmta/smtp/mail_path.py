"""The path argument of MAIL FROM and RCPT TO in its everyday form, parsed cheaply.

aiosmtpd parses every path with the e-mail header parser (``get_angle_addr``) and defines
a typing.Protocol class on each call: under load that was a fifth of the time vmta's
threads held the interpreter (docs/PERFORMANCE.md, "Relay throughput vs Postfix").
Nearly every path is ``<local@domain>`` with a dot-atom local part (RFC 5321 §4.1.2
Dot-string) and a domain of letter-digit-hyphen labels, optionally followed by ESMTP
parameters; for those this gives exactly what aiosmtpd would. Anything else (the null
path ``<>``, quoted local parts, address literals, source routes, comments, non-ASCII)
returns None, and the caller lets aiosmtpd parse it as before.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"  # RFC 5322 §3.2.3 atext
_PLAIN = re.compile(rf"<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>", re.ASCII)


def plain_path(arg: str) -> tuple[str, str] | None:
    """``(address, parameters)`` for ``<local@domain> [parameters]``, else None.

    As ``get_angle_addr`` does, the blanks between ``>`` and the parameters are dropped.
    A parenthesis there would be a comment to that parser: left to it.
    """
    match = _PLAIN.match(arg)
    if match is None:
        return None
    rest = arg[match.end() :].lstrip(" \t")
    if rest.startswith("("):
        return None
    return match.group(1), rest


def has_control_character(address: str) -> bool:
    """True when ``address`` holds NUL, CR, LF, TAB or another control character.

    RFC 5321 §4.1.2 allows none of them in a path, not even quoted (qtextSMTP and
    quoted-pairSMTP are %d32-126), and RFC 5321 §2.3.8 forbids a bare CR or LF in any
    command. aiosmtpd's parser lets some through; stored, they break the spool (a NUL
    cannot go into a PostgreSQL text column) or the next hop's command line.
    """
    return _CONTROL.search(address) is not None
