"""The operator console in a real browser (chromium) against a real `vmta serve`: sign-in
(a wrong secret and a submit credential refused), the queue a test built (three messages
for a relay server whose destination is a dead port), pause and resume a domain with a
real sink receiving the held message within 5 s of the resume, a message search with its
attempts, the DKIM keys with their DNS records and no private key, the session cookie's
flags, a POST without the CSRF token refused; no request
leaves 127.0.0.1 and the console logs no error. The queue page is saved as a screenshot;
with VMTA_SAVE_SCREENSHOT=1 it replaces docs/console.png, which the README shows (a plain
run leaves the repository as it was)."""

from __future__ import annotations

import os
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.conftest import console_errors, requested_hosts
from tests.e2e.serve_process import API_TOKEN, GA, SOURCE_IP, ServeFactory, ServeProcess, wait_until
from tests.free_ports import free_port
from tests.peers.sink import RecordingSink

pytestmark = pytest.mark.peers

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "console.png"
WAIT = 20.0  # bounds a hang on a loaded machine; measures nothing


@dataclass
class World:
    server: ServeProcess
    sink: RecordingSink
    dead_ids: list[str]
    submit_secret: str
    smtp_port: int

    @property
    def base(self) -> str:
        return f"http://{self.server.api_address}"


def relay(server: ServeProcess, name: str, port: int) -> None:
    created = server.api().post(
        f"{GA}/relay_servers",
        json={
            "relay_server": {
                "name": name,
                "source_ip": {"ip": SOURCE_IP, "hostname": "out.vmta.test"},
                "destination": {"hostname": "127.0.0.1", "port": port},
                "throttle_limits": {"max_concurrent_connections": 0, "max_messages_per_hour": 0},
            }
        },
    )
    assert created.status_code == 200, created.text


def send(port: int, mta: str, rcpt: str, subject: str) -> str:
    """One message through vmta's SMTP listener; its queue id (the end of the 250 reply)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo()
        client.mail("sender@src.test")
        client.rcpt(rcpt)
        code, reply = client.data(
            f"X-GreenArrow-MtaID: {mta}\r\nFrom: sender@src.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@src.test>\r\n\r\nbody\r\n".encode()
        )
    assert code == 250, reply
    return reply.decode().split()[-1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    factory = ServeFactory(tmp_path_factory.mktemp("console"), None)
    sink = RecordingSink().start()
    try:
        server = factory.start()
        relay(server, "dead", free_port())  # nothing listens there: the mail stays queued
        relay(server, "live", sink.port)
        key = server.api().post(
            f"{GA}/dkim_keys",
            json={"dkim_key": {"domain": "src.test", "selector": "s1", "key": {"bits": 1024}}},
        )
        assert key.status_code == 200, key.text
        created = factory.cli("credentials", "create", "sender", "--scope", "submit")
        assert created.returncode == 0, created.stderr
        dead = [send(factory.smtp_port, "dead", "rcpt@dest.test", f"dead-{i}") for i in range(3)]
        yield World(server, sink, dead, created.stdout.strip(), factory.smtp_port)
    finally:
        factory.close()
        sink.stop()


def wait_for(driver: webdriver.Chrome, css: str, text: str = "") -> None:
    condition = (
        ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
        if text
        else ec.presence_of_element_located((By.CSS_SELECTOR, css))
    )
    WebDriverWait(driver, WAIT).until(condition)


def sign_in(driver: webdriver.Chrome, base: str, name: str, secret: str) -> None:
    driver.get(f"{base}/console")
    field = driver.find_element(By.NAME, "name")
    assert field.get_attribute("value") == "admin"  # the default name
    field.clear()
    field.send_keys(name)
    box = driver.find_element(By.CSS_SELECTOR, "input[type=password]")
    box.send_keys(secret, Keys.ENTER)  # sent with Enter


def signed_in(driver: webdriver.Chrome, world: World) -> None:
    """Signed in as admin, whatever ran before on this browser: pytest-xdist may hand this
    module's tests to several processes, each with a browser of its own."""
    if driver.get_cookie("vmta_console_session") is None:
        sign_in(driver, world.base, "admin", API_TOKEN)
        wait_for(driver, "#queue-table tbody", "dead")


def test_wrong_secret_and_submit_credential_are_refused(
    browser: webdriver.Chrome, world: World
) -> None:
    browser.delete_all_cookies()  # signed out, whatever ran before on this browser
    sign_in(browser, world.base, "admin", "not-the-secret-0123456789")
    wait_for(browser, "p.error", "Sign-in refused")
    sign_in(browser, world.base, "sender", world.submit_secret)
    wait_for(browser, "p.error", "Sign-in refused")
    assert browser.get_cookie("vmta_console_session") is None
    assert "refused for 'sender'" in world.server.log()
    # The refused sign-ins answered 401: the only errors the browser noted.
    assert all("401" in e for e in console_errors(browser))


def test_sign_in_shows_the_queue_built_by_the_test(browser: webdriver.Chrome, world: World) -> None:
    sign_in(browser, world.base, "admin", API_TOKEN)
    wait_for(browser, "#queue-table tbody", "dead")
    row = browser.find_element(By.XPATH, "//table[@id='queue-table']//tr[td[contains(., 'dead')]]")
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert cells[1] == "dest.test" and cells[2] == "3" and cells[3] == "3"
    cookie = browser.get_cookie("vmta_console_session")
    assert cookie is not None
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain HTTP here; Secure over TLS
    csrf = browser.get_cookie("vmta_console_csrf")
    assert csrf is not None and csrf["httpOnly"] is False  # script reads it
    # The part refreshes by itself: the timestamp the script leaves moves on.
    live = browser.find_element(By.ID, "live")
    first = live.get_attribute("data-refreshed-at")
    WebDriverWait(browser, WAIT).until(
        lambda d: d.find_element(By.ID, "live").get_attribute("data-refreshed-at") != first
    )


def test_a_post_without_the_csrf_token_is_refused(browser: webdriver.Chrome, world: World) -> None:
    signed_in(browser, world)
    session = browser.get_cookie("vmta_console_session")
    assert session is not None
    with httpx.Client(base_url=world.base, cookies={session["name"]: session["value"]}) as http:
        refused = http.post("/console/actions/add-pause", data={"domain": "csrf.test"})
        assert refused.status_code == 403
        forged = http.post(
            "/console/actions/add-pause",
            data={"domain": "csrf.test", "csrf_token": "forged"},
            headers={"X-CSRF-Token": "forged"},
        )
        assert forged.status_code == 403
        # Without a session, nothing but the sign-in page, assets and favicon answer.
        assert httpx.get(f"{world.base}/console/partials/queue").status_code == 401
        assert httpx.get(f"{world.base}/console/static/console.css").status_code == 200
        assert httpx.get(f"{world.base}/favicon.ico").status_code == 200
    assert world.server.get("/v1/pauses") == []  # nothing changed


def test_pause_and_resume_a_domain(browser: webdriver.Chrome, world: World) -> None:
    signed_in(browser, world)
    browser.find_element(By.LINK_TEXT, "Pauses & errors").click()
    wait_for(browser, "#pause-table", "Nothing is paused")
    field = browser.find_element(By.CSS_SELECTOR, "input[aria-label='pause domain']")
    field.send_keys("paused.test", Keys.ENTER)
    wait_for(browser, "#pause-table", "paused.test")
    assert "console add-pause by admin: set pause (domain=paused.test)" in world.server.log()
    time.sleep(1.5)  # a pause applies to mail routed more than 1 s after it was set
    queue_id = send(world.smtp_port, "live", "someone@paused.test", "held")

    def waiting_reason() -> str:
        recipients = world.server.get(f"/api/messages/{queue_id}")["message"]["recipients"]
        return str(recipients[0]["waiting_reason"] or "")

    wait_until(lambda: waiting_reason().startswith("Paused"), WAIT, "the pause to hold the mail")
    assert world.sink.messages == []  # held, and no connection was made for it

    resume = browser.find_element(
        By.XPATH, "//table[@id='pause-table']//tr[td[.='paused.test']]//button"
    )
    resumed_at = time.monotonic()
    resume.click()
    wait_until(lambda: bool(world.sink.messages), WAIT, "the held message at the sink")
    assert time.monotonic() - resumed_at <= 5.0
    assert b"Subject: held" in world.sink.messages[0].data
    wait_for(browser, "#pause-table", "Nothing is paused")
    assert "console remove-pause by admin: removed pause (domain=paused.test)" in world.server.log()


def test_search_a_message_and_see_its_attempts(browser: webdriver.Chrome, world: World) -> None:
    signed_in(browser, world)
    queue_id = world.dead_ids[0]

    def attempted() -> bool:
        return bool(world.server.get(f"/api/messages/{queue_id}")["message"]["attempts"])

    # The dead destination refuses connections: after three failures the path defers
    # what waits on it, with one recorded attempt each.
    wait_until(attempted, 60.0, "an attempt recorded for the dead relay's mail")
    browser.find_element(By.LINK_TEXT, "Search").click()
    box = browser.find_element(By.NAME, "q")
    box.send_keys("<dead-0@src.test>", Keys.ENTER)  # by Message-ID
    wait_for(browser, "#message-detail", queue_id)
    wait_for(browser, "#attempt-table", "deferred")
    wait_for(browser, "#recipient-table", "rcpt@dest.test")
    browser.find_element(By.NAME, "q").clear()
    browser.find_element(By.NAME, "q").send_keys("rcpt@dest.test", Keys.ENTER)  # by recipient
    wait_for(browser, "#result-table", world.dead_ids[2])
    # The queue's domain links to its messages.
    browser.find_element(By.LINK_TEXT, "Queue").click()
    wait_for(browser, "#queue-table", "dest.test")
    browser.find_element(By.LINK_TEXT, "dest.test").click()
    wait_for(browser, "#result-table", world.dead_ids[0])
    found = browser.find_elements(By.CSS_SELECTOR, "#result-table tbody tr")
    assert sorted(r.find_element(By.TAG_NAME, "td").text for r in found) == sorted(world.dead_ids)


def test_every_page_renders_and_the_screenshot(
    browser: webdriver.Chrome, world: World, tmp_path: Path
) -> None:
    signed_in(browser, world)
    for link, part in (
        ("Throttles", "#throttle-table"),
        ("Rates", "#rate-table"),
        ("Events", "#event-table"),
        ("DKIM keys", "#dkim-table"),
        ("Queue", "#queue-table"),
    ):
        browser.find_element(By.LINK_TEXT, link).click()
        wait_for(browser, part)
        if link == "DKIM keys":
            wait_for(browser, "#dkim-table", "s1._domainkey.src.test")
            wait_for(browser, "#dkim-table", "v=DKIM1; k=rsa; p=MI")  # the public key
            assert "PRIVATE" not in browser.page_source
    wait_for(browser, "#queue-table", "dead")
    screenshot = SCREENSHOT if os.environ.get("VMTA_SAVE_SCREENSHOT") == "1" else tmp_path / "q.png"
    browser.set_window_size(1280, 520)  # the page, without the empty space below it
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    page = browser.page_source
    assert API_TOKEN not in page and world.submit_secret not in page
    assert console_errors(browser) == []
    assert requested_hosts(browser) == {"127.0.0.1"}
