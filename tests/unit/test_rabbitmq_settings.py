"""VMTA_RABBITMQ_URL and VMTA_RABBITMQ_OUTBOX: checked, and the URL never shown."""

from __future__ import annotations

import pytest

from vmta.runtime.data_plane_settings import data_plane_settings
from vmta.runtime.settings import SettingsError, load_settings

URL = "amqp://user:s3cret-pass@127.0.0.1:5672/vhost"


def test_defaults_and_values() -> None:
    assert load_settings(environ={}).rabbitmq_url is None
    assert load_settings(environ={}).rabbitmq_outbox == "outbox"
    settings = load_settings(environ={"VMTA_RABBITMQ_URL": URL, "VMTA_RABBITMQ_OUTBOX": "mq"})
    assert (settings.rabbitmq_url, settings.rabbitmq_outbox) == (URL, "mq")
    plane = data_plane_settings(settings)
    assert (plane.rabbitmq_url, plane.rabbitmq_outbox) == (URL, "mq")
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(plane)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"VMTA_RABBITMQ_URL": "http://user:s3cret@host/"}, "must be an amqp:// or amqps:// URL"),
        ({"VMTA_RABBITMQ_OUTBOX": "amq.reserved"}, "must be a queue name"),
        ({"VMTA_RABBITMQ_OUTBOX": "x" * 256}, "must be a queue name"),
    ],
)
def test_bad_values_are_refused_without_echoing_the_url(env: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ=env)
    assert expected in str(caught.value)
    assert "s3cret" not in str(caught.value)
