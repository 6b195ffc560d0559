"""Reading one setting's text (a TOML value, an environment variable, a flag) into its
typed value, or a ``SettingsError`` that names where it came from and what was wrong."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmta.domain.errors import PermanentError
from vmta.domain.paths.relay_policy import parse_networks
from vmta.domain.paths.relay_tls import parse_relay_tls


class SettingsError(PermanentError):
    """A setting is missing, malformed or contradictory."""


# A host name as RFC 1123 §2.1 allows it (letters, digits, hyphens; dot-separated labels).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")


# ---- converting a raw value (TOML value, environment text, flag text) ------------------

Parser = Callable[[object, str], Any]


def _text(value: object, origin: str) -> str:
    if not isinstance(value, str):
        raise SettingsError(f"{origin} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise SettingsError(f"{origin} must not be empty")
    return value


def _path(value: object, origin: str) -> Path:
    return Path(_text(value, origin))


def _log_level(value: object, origin: str) -> str:
    level = _text(value, origin).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"{origin} must be DEBUG, INFO, WARNING or ERROR, not {value!r}")
    return level


def _integer(low: int, high: int) -> Parser:
    def parse(value: object, origin: str) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise SettingsError(f"{origin} must be an integer from {low} to {high}, not {value!r}")
        return value

    return parse


def _seconds(value: object, origin: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise SettingsError(f"{origin} must be a number of seconds, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 10**9:
        raise SettingsError(f"{origin} must be a positive number of seconds, not {value!r}")
    return float(value)


def _seconds_list(value: object, origin: str) -> tuple[float, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise SettingsError(f"{origin} must be a comma-separated list of seconds, e.g. 60,300,900")
    return tuple(_seconds(item, origin) for item in items)


def _boolean(value: object, origin: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{origin} must be true or false, not {value!r}")


def _networks(value: object, origin: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise SettingsError(f"{origin} must be a comma-separated list of networks")
    try:
        return tuple(str(n) for n in parse_networks([str(i) for i in items]))
    except ValueError as exc:
        raise SettingsError(f"{origin}: {exc}") from None


def _dns_servers(value: object, origin: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise SettingsError(f"{origin} must be a comma-separated list of IP[:port]")
    servers: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        host, port = item, ""
        if item.startswith("["):
            host, _, port = item[1:].partition("]")
            port = port.removeprefix(":")
        elif item.count(":") == 1:
            host, _, port = item.partition(":")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise SettingsError(f"{origin}: {item!r} is not an IP address[:port]") from None
        if port and (not port.isdigit() or not 0 < int(port) < 65536):
            raise SettingsError(f"{origin}: {item!r} has a bad port")
        servers.append(item)
    return tuple(servers)


def _hostname(value: object, origin: str) -> str:
    text = _text(value, origin).strip()
    if not _HOSTNAME.fullmatch(text):
        raise SettingsError(f"{origin} must be a host name such as mta1.example.com, not {text!r}")
    return text


MIN_TOKEN_LENGTH = 24  # 24 random base64 characters carry 144 bits (contract §1: >= 128)


def _secret(value: object, origin: str) -> str:
    # Messages here never repeat the value: it is a secret.
    if not isinstance(value, str):
        raise SettingsError(f"{origin} must be a string")
    if len(value) < MIN_TOKEN_LENGTH:
        raise SettingsError(
            f"{origin} must be at least {MIN_TOKEN_LENGTH} characters long"
            " (for example the output of `openssl rand -base64 24`)"
        )
    if not all("!" <= ch <= "~" for ch in value):
        raise SettingsError(
            f"{origin} may only contain visible ASCII characters (no spaces), as it is sent"
            " in an HTTP Authorization header"
        )
    return value


def _relay_tls(value: object, origin: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise SettingsError(
            f"{origin} must be a comma-separated list such as verified or required,relay-1=verified"
        )
    try:
        parse_relay_tls([str(i) for i in items])
    except ValueError as exc:
        raise SettingsError(f"{origin}: {exc}") from None
    return tuple(str(i).strip() for i in items if str(i).strip())


# ---- a listen address ----------------------------------------------------------------


@dataclass(frozen=True)
class Listen:
    """A TCP address to listen on. Port 0 asks the system for a free port; the log then
    names the one it got."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, origin: str) -> Listen:
        problem = SettingsError(
            f"{origin} must be HOST:PORT with a port from 0 to 65535 (for example"
            f" 127.0.0.1:8080, or [::1]:8080 for IPv6), not {text!r}"
        )
        host, sep, port = text.rpartition(":")
        if not sep or not port.isascii() or not port.isdigit() or int(port) > 65535:
            raise problem
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise problem from None
        elif not _HOSTNAME.fullmatch(host):
            raise problem
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _listen(value: object, origin: str) -> Listen:
    return Listen.parse(_text(value, origin), origin)


# ---- the engine, the cluster, MailerQ and events ---------------------------------------


def _rate(value: object, origin: str) -> float:
    """A rate per second: a non-negative number (0 means no cap)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingsError(f"{origin} must be a number of connections a second")
    try:
        rate = float(value)
    except ValueError:
        raise SettingsError(f"{origin} must be a number of connections a second") from None
    if not 0 <= rate <= 1_000_000:
        raise SettingsError(f"{origin} must be from 0 to 1000000, not {value!r}")
    return rate


def _redis_url(value: object, origin: str) -> str:
    text = _text(value, origin).strip()
    if not text.startswith(("redis://", "rediss://", "unix://")):
        # The value is not repeated: it may carry a password.
        raise SettingsError(
            f"{origin} must be a redis://, rediss:// or unix:// URL, e.g."
            " redis://redis.example.com:6379/0"
        )
    return text


def _namespace(value: object, origin: str) -> str:
    text = _text(value, origin).strip()
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", text):
        raise SettingsError(
            f"{origin} must be 1 to 64 letters, digits or _ . : - (a Redis key prefix),"
            f" not {text!r}"
        )
    return text


def _queue_name(value: object, origin: str) -> str:
    text = _text(value, origin).strip()
    # AMQP 0-9-1 queue names: at most 255 bytes; names starting with amq. are reserved.
    if not text or len(text.encode()) > 255 or text.startswith("amq."):
        raise SettingsError(f"{origin} must be a queue name (1-255 bytes, not amq.*)")
    return text


def _http_url(value: object, origin: str) -> str:
    # Messages here never repeat the value: it may carry credentials.
    text = _text(value, origin).strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest or " " in text:
        raise SettingsError(f"{origin} must be an http:// or https:// URL")
    return text


def _amqp_url(value: object, origin: str) -> str:
    text = _text(value, origin).strip()
    scheme, sep, rest = text.partition("://")
    if not sep or scheme.lower() not in ("amqp", "amqps") or not rest or " " in text:
        raise SettingsError(
            f"{origin} must be an amqp:// or amqps:// URL, e.g. amqp://user:password@host:5672/"
        )
    return text


def _result_queue(value: object, origin: str) -> str:
    """A RabbitMQ queue name; empty turns that result queue off."""
    if not isinstance(value, str):
        raise SettingsError(f"{origin} must be a string, not {type(value).__name__}")
    name = value.strip()
    # AMQP 0-9-1 short strings: at most 255 bytes.
    if len(name.encode("utf-8")) > 255 or any(ord(ch) < 32 for ch in name):
        raise SettingsError(f"{origin} must be a queue name of at most 255 bytes, or empty")
    return name


MESSAGE_LOG_MODES = ("each", "minute", "off")


def _message_log(value: object, origin: str) -> str:
    mode = _text(value, origin).strip().lower()
    if mode not in MESSAGE_LOG_MODES:
        raise SettingsError(f"{origin} must be each, minute or off, not {value!r}")
    return mode
