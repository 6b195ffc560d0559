"""Settings: defaults, then an optional TOML file, then ``VMTA_*`` environment variables,
then command-line flags; each later source wins.

Every setting is one field of ``Settings`` (its type and default) plus one row of
``OPTIONS`` (where it comes from and how its text is checked). The command line builds
its flags from ``OPTIONS`` too, so a new setting needs exactly those two lines.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vmta.domain.errors import PermanentError


class SettingsError(PermanentError):
    """A setting is missing, malformed or contradictory."""


# A host name as RFC 1123 §2.1 allows it (letters, digits, hyphens; dot-separated labels).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")


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


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("vmta-data")
    api_listen: Listen = field(default_factory=lambda: Listen("127.0.0.1", 8080))
    # Default: SQLite in data_dir. Kept out of repr: a URL may carry a password.
    database_url: str | None = field(default=None, repr=False)
    # The secret of the `admin` credential, if given. Never in repr, never logged.
    api_token: str | None = field(default=None, repr=False)
    log_level: str = "INFO"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vmta.db').resolve()}"


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


def _listen(value: object, origin: str) -> Listen:
    return Listen.parse(_text(value, origin), origin)


def _log_level(value: object, origin: str) -> str:
    level = _text(value, origin).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise SettingsError(f"{origin} must be DEBUG, INFO, WARNING or ERROR, not {value!r}")
    return level


MIN_TOKEN_LENGTH = 24  # 24 random base64 characters carry 144 bits (API.md §1: >= 128)


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


@dataclass(frozen=True)
class Option:
    """Where one setting comes from. The TOML key is the field name."""

    name: str  # field of Settings
    env: str  # environment variable
    flag: str | None  # command-line flag; None for secrets (a command line is public)
    parse: Parser
    help: str
    metavar: str = "VALUE"
    serve_only: bool = False  # the flag exists on `vmta serve` only


OPTIONS: tuple[Option, ...] = (
    Option(
        "data_dir", "VMTA_DATA_DIR", "--data-dir", _path,
        "data directory: SQLite store and admin-token (default ./vmta-data)", "DIR",
    ),
    Option(
        "database_url", "VMTA_DATABASE_URL", "--database-url", _text,
        "database URL, e.g. postgresql://user:password@host:5432/db"
        " (default: SQLite in the data directory)", "URL",
    ),
    Option(
        "log_level", "VMTA_LOG_LEVEL", "--log-level", _log_level,
        "DEBUG, INFO, WARNING or ERROR (default INFO)", "LEVEL",
    ),
    Option(
        "api_listen", "VMTA_API_LISTEN", "--listen", _listen,
        "API address HOST:PORT (default 127.0.0.1:8080; port 0 picks a free port)",
        "HOST:PORT", serve_only=True,
    ),
    Option(
        "api_token", "VMTA_API_TOKEN", None, _secret,
        "secret of the `admin` API credential, set at start-up",
    ),
)  # fmt: skip


def _option_named(name: str) -> Option:
    for option in OPTIONS:
        if option.name == name:
            return option
    raise SettingsError(f"unknown setting {name}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"configuration file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read configuration file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"configuration file {path} is not valid TOML: {exc}") from None


def load_settings(
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from every source. ``overrides`` are command-line values by field name
    (None: not given). An empty environment variable counts as unset."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}

    config_path = config_file
    if config_path is None and env.get("VMTA_CONFIG"):
        config_path = Path(env["VMTA_CONFIG"])
    if config_path is not None:
        data = _read_toml(config_path)
        known = {option.name for option in OPTIONS}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(
                f"{config_path}: unknown setting(s) {', '.join(unknown)};"
                f" known: {', '.join(sorted(known))}"
            )
        for key, raw in data.items():
            values[key] = _option_named(key).parse(raw, f"{config_path}: {key}")

    for option in OPTIONS:
        raw = env.get(option.env)
        if raw:
            values[option.name] = option.parse(raw, option.env)

    for name, raw in (overrides or {}).items():
        option = _option_named(name)
        if raw is not None:
            values[name] = option.parse(raw, option.flag or name)

    settings = Settings()
    return replace(settings, **values) if values else settings
