"""Settings: defaults < TOML file < VMTA_* environment < flags, and clear errors."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from vmta.cli import build_parser
from vmta.runtime.settings import OPTIONS, Listen, Settings, SettingsError, load_settings

TOKEN_A = "token-from-toml-0123456789abcdef"
TOKEN_B = "token-from-env-0123456789abcdefgh"


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vmta.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.data_dir == Path("vmta-data")
    assert settings.api_listen == Listen("127.0.0.1", 8080)
    assert settings.database_url is None
    assert settings.api_token is None
    assert settings.log_level == "INFO"
    assert settings.effective_database_url == f"sqlite:///{Path('vmta-data/vmta.db').resolve()}"


def test_every_setting_has_exactly_one_source_row() -> None:
    names = [option.name for option in OPTIONS]
    assert sorted(names) == sorted(f.name for f in fields(Settings))
    assert len(set(names)) == len(names)
    assert all(option.env.startswith("VMTA_") for option in OPTIONS)


TOML = f"""
data_dir = "/from/toml"
api_listen = "127.0.0.2:1001"
database_url = "postgresql://toml@127.0.0.1/toml"
api_token = "{TOKEN_A}"
log_level = "debug"
"""


def test_toml_overrides_defaults(tmp_path: Path) -> None:
    settings = load_settings(config_file=write_toml(tmp_path, TOML), environ={})
    assert settings == Settings(
        data_dir=Path("/from/toml"),
        api_listen=Listen("127.0.0.2", 1001),
        database_url="postgresql://toml@127.0.0.1/toml",
        api_token=TOKEN_A,
        log_level="DEBUG",
    )


ENV = {
    "VMTA_DATA_DIR": "/from/env",
    "VMTA_API_LISTEN": "127.0.0.3:1002",
    "VMTA_DATABASE_URL": "postgresql://env@127.0.0.1/env",
    "VMTA_API_TOKEN": TOKEN_B,
    "VMTA_LOG_LEVEL": "WARNING",
}


def test_env_overrides_toml(tmp_path: Path) -> None:
    settings = load_settings(config_file=write_toml(tmp_path, TOML), environ=ENV)
    assert settings == Settings(
        data_dir=Path("/from/env"),
        api_listen=Listen("127.0.0.3", 1002),
        database_url="postgresql://env@127.0.0.1/env",
        api_token=TOKEN_B,
        log_level="WARNING",
    )


def test_flags_override_env_and_toml(tmp_path: Path) -> None:
    flags = {
        "data_dir": "/from/flag",
        "api_listen": "[::1]:1003",
        "database_url": "sqlite:////from/flag.db",
        "log_level": "error",
    }
    settings = load_settings(config_file=write_toml(tmp_path, TOML), environ=ENV, overrides=flags)
    assert settings == Settings(
        data_dir=Path("/from/flag"),
        api_listen=Listen("::1", 1003),
        database_url="sqlite:////from/flag.db",
        api_token=TOKEN_B,  # no flag for a secret: a command line is visible to everyone
        log_level="ERROR",
    )


def test_flags_not_given_leave_lower_sources() -> None:
    flags = {option.name: None for option in OPTIONS}
    settings = load_settings(environ={"VMTA_DATA_DIR": "/from/env"}, overrides=flags)
    assert settings.data_dir == Path("/from/env")
    assert settings.api_listen == Listen("127.0.0.1", 8080)


def test_each_source_may_set_only_some(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, 'data_dir = "/t"\napi_listen = "127.0.0.1:1"\n')
    settings = load_settings(
        config_file=toml,
        environ={"VMTA_API_LISTEN": "127.0.0.1:2"},
        overrides={"log_level": "DEBUG"},
    )
    assert (settings.data_dir, settings.api_listen.port, settings.log_level) == (
        Path("/t"),
        2,
        "DEBUG",
    )


def test_config_file_from_env(tmp_path: Path) -> None:
    toml = write_toml(tmp_path, 'data_dir = "/via/vmta-config"\n')
    settings = load_settings(environ={"VMTA_CONFIG": str(toml)})
    assert settings.data_dir == Path("/via/vmta-config")


def test_config_flag_wins_over_config_env(tmp_path: Path) -> None:
    chosen = write_toml(tmp_path, 'data_dir = "/chosen"\n')
    settings = load_settings(
        config_file=chosen, environ={"VMTA_CONFIG": str(tmp_path / "missing.toml")}
    )
    assert settings.data_dir == Path("/chosen")


def test_empty_environment_variable_counts_as_unset() -> None:
    settings = load_settings(environ={"VMTA_API_LISTEN": "", "VMTA_API_TOKEN": ""})
    assert settings.api_listen == Listen("127.0.0.1", 8080)
    assert settings.api_token is None


def test_port_zero_is_allowed() -> None:
    assert load_settings(environ={"VMTA_API_LISTEN": "127.0.0.1:0"}).api_listen.port == 0


def test_repr_shows_no_secret() -> None:
    settings = Settings(database_url="postgresql://u:PgPass-123@h/db", api_token=TOKEN_A)
    assert "PgPass-123" not in repr(settings)
    assert TOKEN_A not in repr(settings)


# ---- errors -----------------------------------------------------------------------------


def error_of(**kwargs: object) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(**kwargs)  # type: ignore[arg-type]
    return str(caught.value)


@pytest.mark.parametrize(
    "value",
    ["nonsense", "127.0.0.1", "127.0.0.1:", ":8080", "127.0.0.1:65536", "127.0.0.1:-1",
     "::1:8080", "[not-ipv6]:80", "bad host:80", "127.0.0.1:\uff18\uff10", "host\n:80"],
)  # fmt: skip
def test_bad_listen_names_the_variable_and_value(value: str) -> None:
    message = error_of(environ={"VMTA_API_LISTEN": value})
    assert message.startswith("VMTA_API_LISTEN must be HOST:PORT")
    assert repr(value) in message


def test_bad_flag_names_the_flag() -> None:
    message = error_of(environ={}, overrides={"api_listen": "x"})
    assert message.startswith("--listen must be HOST:PORT")


@pytest.mark.parametrize("value", ["0", "65", "two", "-1", "1.5"])
def test_bad_worker_count_names_the_variable_and_its_range(value: str) -> None:
    message = error_of(environ={"VMTA_WORKERS": value})
    given = int(value) if value.isdigit() else value  # digits are read as a number first
    assert message == f"VMTA_WORKERS must be an integer from 1 to 64, not {given!r}"


def test_worker_count_from_the_environment_and_the_flag() -> None:
    assert load_settings(environ={"VMTA_WORKERS": "4"}).workers == 4
    assert load_settings(environ={}, overrides={"workers": 2}).workers == 2
    assert load_settings(environ={}).workers == 1


def test_bad_log_level() -> None:
    message = error_of(environ={"VMTA_LOG_LEVEL": "loud"})
    assert message == "VMTA_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not 'loud'"


@pytest.mark.parametrize("token", ["short-token", "with space 0123456789abcdefghij"])
def test_bad_api_token_is_refused_without_repeating_it(token: str) -> None:
    message = error_of(environ={"VMTA_API_TOKEN": token})
    assert message.startswith("VMTA_API_TOKEN ")
    assert token not in message


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert error_of(config_file=missing, environ={}) == (
        f"configuration file {missing} does not exist"
    )


def test_config_env_pointing_nowhere(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    message = error_of(environ={"VMTA_CONFIG": str(missing)})
    assert str(missing) in message and "does not exist" in message


def test_invalid_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "data_dir = \n")
    message = error_of(config_file=path, environ={})
    assert message.startswith(f"configuration file {path} is not valid TOML")
    assert "line 1" in message


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'data_dir = "/d"\nlisten = "127.0.0.1:1"\n')
    message = error_of(config_file=path, environ={})
    assert message.startswith(f"{path}: unknown setting(s) listen;")
    assert "api_listen" in message  # the list of known settings helps spot the typo


def test_wrong_toml_type(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "api_listen = 8080\n")
    assert error_of(config_file=path, environ={}) == (
        f"{path}: api_listen must be a string, not int"
    )


def test_empty_toml_value(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'data_dir = ""\n')
    assert error_of(config_file=path, environ={}) == f"{path}: data_dir must not be empty"


def test_bad_toml_value_names_file_and_key(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'api_listen = "everywhere"\n')
    assert error_of(config_file=path, environ={}).startswith(
        f"{path}: api_listen must be HOST:PORT"
    )


# ---- the command line builds its flags from the same table ---------------------------


def test_cli_flags_come_from_the_settings_table() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["serve", "--data-dir", "/d", "--listen", "127.0.0.1:9", "--log-level", "DEBUG"]
    )
    assert (args.data_dir, args.api_listen, args.log_level) == ("/d", "127.0.0.1:9", "DEBUG")
    # Settings flags work before and after the action of a nested command.
    after = parser.parse_args(["db", "upgrade", "--database-url", "sqlite:///x.db"])
    before = parser.parse_args(["db", "--database-url", "sqlite:///x.db", "upgrade"])
    assert after.database_url == before.database_url == "sqlite:///x.db"


def test_cli_has_no_flag_for_the_api_token() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--api-token", TOKEN_A])


def test_listen_is_a_serve_flag_only() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["db", "upgrade", "--listen", "127.0.0.1:1"])


def test_relay_tls_policies_are_checked() -> None:
    settings = load_settings(environ={"VMTA_RELAY_TLS": "required, smarthost=verified"})
    assert settings.relay_tls == ("required", "smarthost=verified")
    with pytest.raises(SettingsError, match="VMTA_RELAY_TLS"):
        load_settings(environ={"VMTA_RELAY_TLS": "strict"})


def test_hostile_client_settings() -> None:
    settings = load_settings(
        environ={
            "VMTA_SMTP_MAX_SESSIONS": "50",
            "VMTA_SMTP_MAX_SESSIONS_PER_CLIENT": "5",
            "VMTA_SMTP_SHUTDOWN_GRACE": "12.5",
            "VMTA_SMTP_AUTH_ADMIN": "true",
        }
    )
    assert (settings.smtp_max_sessions, settings.smtp_max_sessions_per_client) == (50, 5)
    assert settings.smtp_shutdown_grace == 12.5 and settings.smtp_auth_admin is True
    with pytest.raises(SettingsError, match="VMTA_SMTP_MAX_SESSIONS"):
        load_settings(environ={"VMTA_SMTP_MAX_SESSIONS": "0"})


def test_event_settings_from_the_environment() -> None:
    settings = load_settings(
        environ={
            "VMTA_EVENTS_HTTP_URL": "https://hooks.example.com/vmta",
            "VMTA_EVENTS_HTTP_BATCH": "50",
            "VMTA_RABBITMQ_URL": "amqp://user:pw@mq.example.com:5672/",
            "VMTA_RABBITMQ_SUCCESS": "delivered",
            # The one kind of setting where empty is a value: that result queue is off.
            "VMTA_RABBITMQ_RETRY": "",
        }
    )
    assert settings.events_http_url == "https://hooks.example.com/vmta"
    assert settings.events_http_batch == 50
    assert settings.rabbitmq_url == "amqp://user:pw@mq.example.com:5672/"
    assert (settings.rabbitmq_results, settings.rabbitmq_success) == ("results", "delivered")
    assert (settings.rabbitmq_failure, settings.rabbitmq_retry) == ("failure", "")
    assert "pw" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "start"),
    [
        ("VMTA_EVENTS_HTTP_URL", "ftp://user:secret@x/", "VMTA_EVENTS_HTTP_URL must be an http"),
        ("VMTA_RABBITMQ_URL", "http://user:secret@x/", "VMTA_RABBITMQ_URL must be an amqp"),
        ("VMTA_EVENTS_HTTP_BATCH", "0", "VMTA_EVENTS_HTTP_BATCH must be an integer from 1"),
    ],
)
def test_bad_event_settings_are_refused_without_echoing_secrets(
    variable: str, value: str, start: str
) -> None:
    message = error_of(environ={variable: value})
    assert message.startswith(start)
    assert "secret" not in message
