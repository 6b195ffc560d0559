"""The start-up report's rules: which VMTA_* variables are unknown (derived from the
settings table, so a setting added there is known at once), which host names are not
fully qualified, and that no password reaches the summary."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from vmta.runtime.setting_options import OPTIONS
from vmta.runtime.settings import Settings
from vmta.runtime.startup_report import (
    hostname_problem,
    report,
    summary,
    unknown_variables,
    without_password,
)


def test_every_setting_and_vmta_config_are_known() -> None:
    environ = {option.env: "x" for option in OPTIONS} | {"VMTA_CONFIG": "x", "PATH": "/bin"}
    environ["VMTA_TEST_WORKERS"] = "2"  # the test suite's own
    assert unknown_variables(environ) == []


def test_unknown_variables_are_found_with_a_likely_meaning() -> None:
    environ = {"VMTA_DATA_DIRR": "x", "VMTA_NOTHING_LIKE_IT": "1", "VMTA_HOSTNAME": "a.b"}
    assert unknown_variables(environ) == [
        ("VMTA_DATA_DIRR", "VMTA_DATA_DIR"),
        ("VMTA_NOTHING_LIKE_IT", None),
    ]


@pytest.mark.parametrize(
    ("hostname", "bad"),
    [
        ("mta1.example.com", False),
        ("mta1.example.com.", False),
        ("localhost", True),
        ("mailer", True),
        ("box.localdomain", True),
        ("vmta.localhost", True),
    ],
)
def test_hostnames_that_are_not_fqdns(hostname: str, bad: bool) -> None:
    assert (hostname_problem(hostname) is not None) is bad


def test_passwords_never_reach_the_summary() -> None:
    settings = Settings(
        data_dir=Path("d"),
        hostname="mta1.example.com",
        database_url="postgresql://vmta:db-secret@db.example.com:5432/vmta",
        redis_url="redis://vmta:redis-secret@127.0.0.1:6379/0",
        dns_servers=("127.0.0.1:5353",),
        retry_backoff=(60.0, 300.0),
    )
    text = "\n".join(summary(settings))
    assert "secret" not in text
    assert "database: postgresql://vmta:***@db.example.com:5432/vmta" in text
    assert "redis: 127.0.0.1:6379 database 0" in text
    assert "DNS servers: 127.0.0.1:5353" in text
    assert "retry schedule (s): 60, 300;" in text
    assert without_password("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379"


def test_report_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vmta.startup")
    report(Settings(data_dir=Path("d"), hostname="localhost"), {"VMTA_RETRY_BACKOF": "1"})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("host name 'localhost' is not a fully qualified domain name" in w for w in warnings)
    assert (
        "ignoring environment variable VMTA_RETRY_BACKOF: vmta has no such setting;"
        " did you mean VMTA_RETRY_BACKOFF?"
    ) in warnings
