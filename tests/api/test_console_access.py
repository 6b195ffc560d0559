"""The console's access rules without a browser (tests/browser drives one): what answers
without a session, sign-in refusals and their slowing down, CSRF on every action, bad
action input refused with nothing changed, and every action logged with the credential's
name."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TEST_SECRET
from vmta.api.app import create_app
from vmta.api.dependencies import app_context
from vmta.api.ports import ApiPorts
from vmta.domain.config.credential import hash_secret
from vmta.store.credentials import CredentialRepository
from vmta.store.delivery_controls import PauseRepository
from vmta.store.store import Store

pytestmark = pytest.mark.one_database

SUBMIT_SECRET = "submit-secret-0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def browser_like(store: Store) -> Iterator[TestClient]:
    with store.write() as conn:
        CredentialRepository(conn).put("sender", hash_secret(SUBMIT_SECRET), "submit")
    with TestClient(
        create_app(ApiPorts(store, data_plane=None)), raise_server_exceptions=False
    ) as client:
        yield client


def sign_in(client: TestClient, name: str, secret: str) -> int:
    page = client.get("/console")
    assert page.status_code == 200 and 'type="password"' in page.text
    token = client.cookies.get("vmta_console_csrf")
    answer = client.post(
        "/console/sign-in",
        data={"name": name, "secret": secret, "csrf_token": token},
        follow_redirects=False,
    )
    return answer.status_code


def test_without_a_session_only_sign_in_assets_and_favicon_answer(browser_like: TestClient) -> None:
    assert browser_like.get("/console").status_code == 200
    assert browser_like.get("/console/static/console.js").status_code == 200
    assert browser_like.get("/console/static/console.css").status_code == 200
    assert browser_like.get("/favicon.ico").status_code == 200
    assert browser_like.get("/console/static/routes.py").status_code == 404  # only the assets
    assert browser_like.get("/console/partials/queue").status_code == 401
    page = browser_like.get("/console/queue", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/console"
    # An API credential in the Authorization header is no console session.
    headers = {"Authorization": f"Bearer {TEST_SECRET}"}
    assert browser_like.get("/console/partials/queue", headers=headers).status_code == 401
    assert browser_like.post("/console/actions/add-pause", headers=headers).status_code == 401


def test_sign_in_refusals_and_their_slowing_down(
    browser_like: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vmta.console")
    assert sign_in(browser_like, "sender", SUBMIT_SECRET) == 401  # submit scope
    assert sign_in(browser_like, "admin", "wrong-secret") == 401
    assert sign_in(browser_like, "nobody", TEST_SECRET) == 401
    assert browser_like.cookies.get("vmta_console_session") is None
    console = app_context(browser_like.app).console  # type: ignore[arg-type]
    # Three failures are free; the next attempt from this client waits before its check.
    assert console.failures.delay("testclient", time.monotonic()) == 1.0
    started = time.monotonic()
    assert sign_in(browser_like, "admin", TEST_SECRET) == 303  # right, yet it waited
    assert time.monotonic() - started >= 1.0
    assert console.failures.delay("testclient", time.monotonic()) == 0.0  # forgotten
    assert SUBMIT_SECRET not in caplog.text and "wrong-secret" not in caplog.text
    assert "console sign-in refused for 'sender'" in caplog.text
    # The sign-in form's own token is required.
    answer = browser_like.post(
        "/console/sign-in", data={"name": "admin", "secret": TEST_SECRET}, follow_redirects=False
    )
    assert answer.status_code == 403


def test_actions_need_the_csrf_token_and_are_logged_with_the_name(
    browser_like: TestClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="vmta.console")
    assert sign_in(browser_like, "admin", TEST_SECRET) == 303
    token = browser_like.cookies.get("vmta_console_csrf")
    assert (
        browser_like.post("/console/actions/add-pause", data={"domain": "a.test"}).status_code
        == 403
    )
    wrong = browser_like.post(
        "/console/actions/add-pause", data={"domain": "a.test"}, headers={"X-CSRF-Token": "x"}
    )
    assert wrong.status_code == 403
    with store.read() as conn:
        assert PauseRepository(conn).all() == []

    # Bad input: the field's problem, nothing stored.
    bad = browser_like.post(
        "/console/actions/add-pause",
        data={"domain": "a.test", "ip": "192.0.2.1"},
        headers={"X-CSRF-Token": token},
    )
    assert bad.status_code == 400 and "domain" in bad.text
    bad_error = browser_like.post(
        "/console/actions/add-error",
        data={"domain": "a.test", "code": "99"},
        headers={"X-CSRF-Token": token},
    )
    assert bad_error.status_code == 400 and "code" in bad_error.text
    with store.read() as conn:
        assert PauseRepository(conn).all() == []
    assert (
        browser_like.post(
            "/console/actions/end-backoff", data={"throttle": "12"}, headers={"X-CSRF-Token": token}
        ).status_code
        == 400
    )
    assert (
        browser_like.post("/console/actions/nothing", headers={"X-CSRF-Token": token}).status_code
        == 404
    )

    # The form field works as well as the header (a page without script).
    done = browser_like.post(
        "/console/actions/add-pause",
        data={"domain": "a.test", "csrf_token": token},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/controls"
    with store.read() as conn:
        assert [p.matcher.domain for p in PauseRepository(conn).all()] == ["a.test"]
    assert "console add-pause by admin: set pause (domain=a.test)" in caplog.text

    signed_out = browser_like.post(
        "/console/sign-out", data={"csrf_token": token}, follow_redirects=False
    )
    assert signed_out.status_code == 303
    assert browser_like.get("/console/partials/controls").status_code == 401


def test_pages_send_a_content_security_policy_of_their_own_files(browser_like: TestClient) -> None:
    page = browser_like.get("/console")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert "http://" not in page.text.replace('http://"', "") and "https://" not in page.text


def test_cookies_are_secure_over_tls(store: Store) -> None:
    app = create_app(ApiPorts(store, data_plane=None))
    with TestClient(app, base_url="https://vmta.test") as client:
        client.get("/console")
        token = client.cookies.get("vmta_console_csrf")
        answer = client.post(
            "/console/sign-in",
            data={"name": "admin", "secret": TEST_SECRET, "csrf_token": token},
            follow_redirects=False,
        )
    assert answer.status_code == 303
    cookies = answer.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("vmta_console_session="))
    csrf = next(c for c in cookies if c.startswith("vmta_console_csrf="))
    for flag in ("HttpOnly", "Secure", "SameSite=strict", "Path=/console"):
        assert flag in session
    assert "Secure" in csrf and "HttpOnly" not in csrf


def test_every_part_renders_for_a_signed_in_operator(browser_like: TestClient) -> None:
    assert sign_in(browser_like, "admin", TEST_SECRET) == 303
    for path in (
        "/console/partials/queue?group_by=virtualmta_most_recent&variant=throttle",
        "/console/partials/queue?group_by=nonsense&variant=nonsense",  # the defaults
        "/console/partials/throttles",
        "/console/partials/controls",
        "/console/partials/rates",
        "/console/partials/search?q=%40nowhere.test",
        "/console/partials/search?q=" + "x" * 5000,  # cut, not refused
        "/console/partials/events",
        "/console/partials/dkim",
    ):
        answer = browser_like.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
    assert browser_like.get("/console/partials/nothing").status_code == 404
    assert browser_like.get("/console/nothing").status_code == 404


def test_a_forced_error_is_added_listed_and_removed(browser_like: TestClient, store: Store) -> None:
    assert sign_in(browser_like, "admin", TEST_SECRET) == 303
    csrf = {"X-CSRF-Token": browser_like.cookies.get("vmta_console_csrf") or ""}
    fields = {"domain": "b.test", "code": "421", "extended": "4.7.0", "description": "slow"}
    added = browser_like.post("/console/actions/add-error", data=fields, headers=csrf)
    assert added.status_code == 200 and added.text == "set forced error (domain=b.test)"
    listed = browser_like.get("/console/partials/controls").text
    assert "b.test" in listed and "421 4.7.0 slow" in listed
    removed = browser_like.post(
        "/console/actions/remove-error", data={"domain": "b.test"}, headers=csrf
    )
    assert removed.status_code == 200
    again = browser_like.post(
        "/console/actions/remove-error", data={"domain": "b.test"}, headers=csrf
    )
    assert again.status_code == 400 and again.text == "No such forced error."
    assert "No forced error." in browser_like.get("/console/partials/controls").text
