"""Each default is written once: the settings dataclass of the part that uses it is the
source, ``Settings`` takes it from there, and ``--help`` and README's configuration
table show it from ``Settings`` (runtime/setting_options.py)."""

from __future__ import annotations

import re
from dataclasses import replace
from inspect import signature
from pathlib import Path
from typing import Any

import pytest

from vmta.cli import build_parser
from vmta.delivery.routing.egress_health import EgressHealth
from vmta.delivery.throttles.redis_backoffs import RedisBackoffs
from vmta.delivery.throttles.redis_throttles import DEFAULT_LEASE, RedisThrottles
from vmta.runtime.data_plane_settings import DataPlaneSettings, data_plane_settings
from vmta.runtime.setting_options import Option
from vmta.runtime.settings import OPTIONS, Settings, SettingsError, default_of, help_text
from vmta.runtime.settings_table import rows
from vmta.smtp.inbound_listener import InboundSettings
from vmta.smtp.listener import ListenerSettings

README = Path(__file__).resolve().parents[2] / "README.md"
# "(default X)", "(default X; ...)", "(default X: 2 days)": the value is X. "(default:
# words)" describes a default that is nothing (no URL, no file) in words.
DOCUMENTED = re.compile(r"\(default ([^;)]+)[;)]|; default ([^;)]+)[;)]")
NOTHING = (None, ())


def documented_default(option: Option) -> str | None:
    found = DOCUMENTED.search(help_text(option))
    if found is None:
        return None
    return found[1] or found[2]


def read_back(option: Option, text: str) -> Any:
    """The value a user gets by setting the shown default, as they would write it."""
    try:
        return option.parse(text, option.env)
    except SettingsError:
        # "172800: 2 days", "true: JSON arrays": the value, then a remark after ": ".
        value, _, _remark = text.partition(": ")
        return option.parse(value, option.env)


def test_the_data_plane_gets_its_parts_own_defaults_when_nothing_is_set() -> None:
    """Settings' defaults are the components' defaults: every part of the data plane
    built from default Settings equals that part built with no arguments."""
    built = data_plane_settings(Settings(hostname="mta.example"))
    # Per-type event URLs: absent ("" each) is the same as none given.
    assert all(url == "" for url in built.events.http_type_urls.values())
    built = replace(built, events=replace(built.events, http_type_urls={}))
    assert built == DataPlaneSettings(hostname="mta.example")


def test_the_defaults_of_parts_always_given_a_value_agree() -> None:
    """Parts the data plane always gives a value keep a default of their own for a part
    built alone (tests), in modules the settings do not import (aiosmtpd, redis): it
    must say the same."""
    assert ListenerSettings.max_message_size == DataPlaneSettings.max_message_size
    assert InboundSettings.max_message_size == DataPlaneSettings.max_message_size
    assert InboundSettings.max_recipients == DataPlaneSettings.inbound_max_recipients
    health = EgressHealth()
    assert health.threshold == DataPlaneSettings.external_mta_failures
    assert health.suspension == DataPlaneSettings.external_mta_suspension
    for build in (RedisThrottles.__init__, RedisBackoffs.__init__):
        assert signature(build).parameters["namespace"].default == Settings.redis_namespace
    assert Settings.redis_lease == DEFAULT_LEASE


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_every_documented_default_is_the_dataclass_default(option: Option) -> None:
    # No help text writes a default itself: it says {default}, or describes "nothing".
    assert not re.search(r"default [^{]", option.help.replace("default:", "")), option.help
    default = default_of(option.name)
    shown = documented_default(option)
    if shown is None:
        assert default in NOTHING or option.name == "hostname", help_text(option)
        return
    assert read_back(option, shown) == default


def test_help_shows_the_defaults() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    text = commands["serve"].format_help()
    assert "default 127.0.0.1:8080" in text
    assert f"default {Settings().workers}" in text


def test_the_readme_table_is_the_one_made_from_the_options() -> None:
    """Run `python -m vmta.runtime.settings_table --write README.md` after changing a
    setting."""
    readme = README.read_text(encoding="utf-8").split("\n")
    start = readme.index(rows()[0])
    assert readme[start : start + len(rows())] == rows()
    assert not readme[start + len(rows())].startswith("|")  # no row left over
