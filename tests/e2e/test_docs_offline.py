"""`/docs` renders in headless Chromium on a host without internet access.

Chromium resolves no host name (every name maps to NOTFOUND) and sends every request
through a small proxy of the test's own. The proxy forwards only requests for the vmta
listener, adding the API credential the way a browser does after its login prompt, and
answers 502 to anything else, writing it down. The page must show Swagger UI with vmta's
operations, and the page may have asked nothing of any other host (requests that carry
the page as Referer or Origin; Chromium's own background requests to its vendor's
services carry neither and are refused like everything else).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import skip_or_fail
from tests.e2e.serve_process import API_TOKEN, ServeFactory

CHROMIUM_DEADLINE = 120  # seconds; bounds a hang on a loaded machine, measures nothing


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    skip_or_fail("headless Chromium is not installed (Debian package chromium)")
    raise AssertionError("unreachable")


class OnlyToVmtaProxy:
    """An HTTP proxy that lets requests reach one listener only."""

    def __init__(self, allowed: str, authorization: str) -> None:
        self.allowed = allowed  # "127.0.0.1:PORT"
        self.authorization = authorization
        self.forwarded: list[str] = []
        self.refused: list[str] = []
        self.refused_for_the_page: list[str] = []  # carrying the page as Referer/Origin
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        with client:
            client.settimeout(30)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ", 2)
            prefix = f"http://{self.allowed}"
            if method == "CONNECT" or not target.startswith(prefix):
                from_page = any(
                    line.lower().startswith(("referer:", "origin:")) and prefix in line
                    for line in header_lines
                )
                with self._lock:
                    self.refused.append(f"{method} {target}")
                    if from_page:
                        self.refused_for_the_page.append(f"{method} {target}")
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with self._lock:
                self.forwarded.append(f"{method} {target}")
            path = target[len(prefix) :] or "/"
            headers = [
                line
                for line in header_lines
                if not line.lower().startswith(("proxy-", "connection:", "authorization:"))
            ]
            headers += [f"Authorization: {self.authorization}", "Connection: close"]
            upstream_head = "\r\n".join([f"{method} {path} {version}", *headers]) + "\r\n\r\n"
            host, port = self.allowed.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=30) as upstream:
                upstream.sendall(upstream_head.encode("latin-1") + rest)
                while True:
                    data = upstream.recv(65536)
                    if not data:
                        break
                    client.sendall(data)

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def vmta_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One `vmta serve` for the module: its tests only read pages of the API."""
    factory = ServeFactory(tmp_path_factory.mktemp("docs-offline"), None)
    try:
        yield factory.start().api_address
    finally:
        factory.close()


def run_chromium(browser: str, proxy: OnlyToVmtaProxy, url: str, screenshot: Path) -> str:
    """The page's DOM once its scripts ran, and its screenshot, from one Chromium run."""
    ran = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",  # the tests may run as root, where the sandbox cannot start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            # No name resolves (the proxy's address is a literal, kept reachable).
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            f"--proxy-server=http://{proxy.address}",
            "--proxy-bypass-list=<-loopback>",  # loopback too goes through the proxy
            "--virtual-time-budget=20000",
            "--window-size=1280,1400",
            "--dump-dom",
            f"--screenshot={screenshot}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_DEADLINE,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return ran.stdout


def test_docs_render_with_no_network(vmta_api: str, tmp_path: Path) -> None:
    browser = chromium()
    proxy = OnlyToVmtaProxy(vmta_api, f"Bearer {API_TOKEN}")
    try:
        url = f"http://{vmta_api}/docs"
        screenshot = tmp_path / "docs.png"
        dom = run_chromium(browser, proxy, url, screenshot)
    finally:
        proxy.close()
    print("refused (Chromium's own included):", proxy.refused)
    assert proxy.refused_for_the_page == []  # the page asked nothing of any other host
    forwarded = " ".join(proxy.forwarded).replace(f"http://{vmta_api}", "")
    assert "GET /openapi.json" in forwarded and "GET /docs-assets/swagger-ui-bundle.js" in forwarded
    # Swagger UI ran: it rendered the document's title and an operation block per route.
    assert "Failed to load API definition" not in dom
    assert 'class="title"' in dom and "vmta" in dom
    assert dom.count("opblock-summary-path") > 10, dom[-2000:]
    assert "/ga/api/v3/eng/relay_servers" in dom and "/api/queue" in dom
    assert screenshot.stat().st_size > 10_000


def test_no_redoc_page_that_would_need_the_network(vmta_api: str) -> None:
    """ReDoc's page asks Google Fonts and a CDN for a logo: it is not served at all."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    response = httpx.get(f"http://{vmta_api}/redoc", headers=headers, timeout=30)
    assert response.status_code == 404
    docs = httpx.get(f"http://{vmta_api}/docs", headers=headers, timeout=30)
    assert docs.status_code == 200
    # The Swagger UI page names no other host: every asset is vmta's own.
    assert "http://" not in docs.text.replace(f"http://{vmta_api}", "")
    assert "https://" not in docs.text
