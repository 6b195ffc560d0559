"""Ending a throttle's backoff from the console, in a real browser: the in-process API on a
real uvicorn listener, over the node's backoff registry driven into backoff as the engine
drives it (tests/api/test_throttles.py); the Throttles page shows the reason, since, until
and reduced limits, and "End backoff" takes the throttle out of it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi.testclient import TestClient
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.api.test_throttles import START, drive_into_backoff, setup_ip
from tests.browser.conftest import console_errors, requested_hosts
from tests.conftest import TEST_SECRET
from tests.manual_clock import ManualClock
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.delivery.throttles.throttle_backoffs import ThrottleBackoffs
from vmta.store.store import Store

pytestmark = [pytest.mark.peers, pytest.mark.one_database]

WAIT = 20.0  # bounds a hang; measures nothing


@dataclass
class Served:
    base: str
    registry: ThrottleBackoffs
    clock: ManualClock


@pytest.fixture
def served(store: Store) -> Iterator[Served]:
    registry = ThrottleBackoffs(min_attempts=4)
    clock = ManualClock(START)
    app = create_app(ApiPorts(store, data_plane=None, throttle_states=registry, now=clock.now))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {TEST_SECRET}"
        ip = setup_ip(client)
    drive_into_backoff(store, registry, clock, ip["id"], "b.a.test")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    try:
        yield Served(f"http://127.0.0.1:{sock.getsockname()[1]}", registry, clock)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_end_a_backoff(browser: webdriver.Chrome, served: Served) -> None:
    wait = WebDriverWait(browser, WAIT)
    browser.get(f"{served.base}/console")
    browser.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(TEST_SECRET, Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.ID, "queue-table")))
    browser.find_element(By.LINK_TEXT, "Throttles").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "throttle-table"), "throttle_program"))
    row = browser.find_element(By.XPATH, "//table[@id='throttle-table']/tbody/tr")
    cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
    assert cells[1] == "ipaddr-1" and cells[2] == "[*.]a.test"
    assert cells[3] == "throttle_program"  # the reason
    assert cells[4] == "2026-06-21 00:00:00" and cells[5] == "2026-06-21 00:10:00"
    assert cells[6] == "25 of 100" and cells[7] == "1 of 4"  # the reduced limits
    assert len(served.registry.in_backoff(served.clock.now())) == 1

    row.find_element(By.TAG_NAME, "button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "throttle-table"), "No throttle"))
    assert served.registry.in_backoff(served.clock.now()) == []
    assert "ended the backoff" in browser.find_element(By.ID, "flash").text
    assert console_errors(browser) == []
    assert requested_hosts(browser) == {"127.0.0.1"}
