"""Rules for names, hostnames and IP addresses used across the control plane."""

from __future__ import annotations

import ipaddress
import re

NAME_MAX = 200
_FORBIDDEN_NAME_CHARS = frozenset(",#@")
_LETTER_OR_DIGIT = re.compile(r"[A-Za-z0-9]")
_DNS_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_INTEGER = re.compile(r"^[+-]?\d+$")


def virtual_mta_name_problems(name: str) -> list[str]:
    """Why ``name`` cannot name a VirtualMTA (GreenArrow v3 rules); empty when it can."""
    problems: list[str] = []
    if not 1 <= len(name) <= NAME_MAX:
        problems.append(f"must be from 1 to {NAME_MAX} characters in length")
    if any(not 0x20 <= ord(ch) <= 0x7E for ch in name):
        problems.append("must contain only ASCII characters in the range 0x20-0x7e")
    if any(ch in _FORBIDDEN_NAME_CHARS for ch in name):
        problems.append("must not contain a comma, pound sign or at-sign")
    if name != name.strip(" "):
        problems.append("must not have leading or trailing whitespace")
    if _INTEGER.match(name.strip()):
        problems.append("must not be an integer")
    return problems


def template_name_problems(name: str) -> list[str]:
    """Why ``name`` cannot name a throttling template; empty when it can."""
    problems: list[str] = []
    if not 1 <= len(name) <= NAME_MAX:
        problems.append(f"must be from 1 to {NAME_MAX} characters in length")
    if not _LETTER_OR_DIGIT.search(name):
        problems.append("must contain at least one letter or digit")
    return problems


def name_key(name: str) -> str:
    """The key under which names are unique: names compare ignoring (ASCII) case."""
    return name.lower()


def is_ipv4(text: str) -> bool:
    """True for a dotted-decimal IPv4 address such as ``127.0.0.2`` (no leading zeros)."""
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 address literal."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def normalize_ip(text: str) -> str:
    """The canonical text of an IP address (IPv6 compressed, lower case)."""
    return str(ipaddress.ip_address(text))


def relay_hostname_problems(hostname: str) -> list[str]:
    """Rules of ``source_ip.hostname`` and ``destination.hostname`` of a relay server."""
    problems: list[str] = []
    if not 1 <= len(hostname) <= NAME_MAX:
        problems.append(f"must be from 1 to {NAME_MAX} characters in length")
    elif not (hostname[0].isascii() and hostname[0].isalnum()) or not (
        hostname[-1].isascii() and hostname[-1].isalnum()
    ):
        problems.append("must start and end with a letter or number")
    return problems


def ehlo_hostname_problems(hostname: str) -> list[str]:
    """Rules of an IP address VirtualMTA's EHLO hostname: DNS labels, not an IPv4 literal."""
    if not 1 <= len(hostname) <= NAME_MAX:
        return [f"must be from 1 to {NAME_MAX} characters in length"]
    if is_ipv4(hostname):
        return ["must be a hostname, not an IP address"]
    labels = hostname.split(".")
    if not all(_DNS_LABEL.match(label) for label in labels):
        return [
            "must be DNS labels of letters, digits and hyphens joined by dots"
            " (a label may not start or end with a hyphen)"
        ]
    return []
