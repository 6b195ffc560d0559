"""Settings: defaults, then an optional TOML file, then ``VMTA_*`` environment variables,
then command-line flags; each later source wins."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from vmta.domain.errors import PermanentError


class SettingsError(PermanentError):
    """A setting is missing, malformed or contradictory."""


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, name: str) -> Listen:
        host, sep, port = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise SettingsError(
                f"{name} must be HOST:PORT (for example 127.0.0.1:8080), not {text!r}"
            )
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("vmta-data")
    api_listen: Listen = field(default_factory=lambda: Listen("127.0.0.1", 8080))
    database_url: str | None = None  # default: SQLite in data_dir
    api_token: str | None = None  # secret of the `admin` credential, if given
    log_level: str = "INFO"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'vmta.db').resolve()}"


# setting name -> (environment variable, TOML key)
_SOURCES = {
    "data_dir": ("VMTA_DATA_DIR", "data_dir"),
    "api_listen": ("VMTA_API_LISTEN", "api_listen"),
    "database_url": ("VMTA_DATABASE_URL", "database_url"),
    "api_token": ("VMTA_API_TOKEN", "api_token"),
    "log_level": ("VMTA_LOG_LEVEL", "log_level"),
}


def _convert(name: str, value: Any, origin: str) -> Any:
    if not isinstance(value, str):
        raise SettingsError(f"{origin}: {name} must be a string")
    if name == "data_dir":
        return Path(value)
    if name == "api_listen":
        return Listen.parse(value, origin)
    if name == "log_level":
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise SettingsError(f"{origin}: log_level must be DEBUG, INFO, WARNING or ERROR")
        return level
    return value or None


def load_settings(
    *,
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    env = dict(os.environ if environ is None else environ)
    settings = Settings()
    known = {f.name for f in fields(Settings)}
    config_path = config_file or (Path(env["VMTA_CONFIG"]) if env.get("VMTA_CONFIG") else None)
    if config_path is not None:
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"configuration file {config_path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(
                f"configuration file {config_path} is not valid TOML: {exc}"
            ) from None
        section = data.get("vmta", data)
        unknown = sorted(set(section) - {toml for _, toml in _SOURCES.values()})
        if unknown:
            raise SettingsError(f"{config_path}: unknown settings: {', '.join(unknown)}")
        for name, (_, toml_key) in _SOURCES.items():
            if toml_key in section:
                value = _convert(name, section[toml_key], f"{config_path}: {toml_key}")
                settings = replace(settings, **{name: value})
    for name, (variable, _) in _SOURCES.items():
        if variable in env and env[variable] != "":
            settings = replace(settings, **{name: _convert(name, env[variable], variable)})
    for name, value in (overrides or {}).items():
        if name not in known:
            raise SettingsError(f"unknown setting {name}")
        if value is not None:
            settings = replace(
                settings, **{name: _convert(name, value, f"--{name.replace('_', '-')}")}
            )
    return settings
