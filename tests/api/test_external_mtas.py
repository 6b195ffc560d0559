"""External MTAs, MailerQ REST API v1: every example of seed 000 and every rule of contract §3."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from tests.api.helpers import snapshot
from tests.conftest import TEST_SECRET
from vmta.api.app import create_app
from vmta.api.ports import ApiPorts
from vmta.store.store import Store

PATH = "/v1/externalmtas"
JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

# The seed's request bodies, byte for byte.
SEED_POST_JSON = b"""{
    "public_ip": "8.8.8.8",
    "local_ip": "127.0.0.1",
    "connect_port": "2525"
}"""
SEED_POST_FORM = b"public_ip=8.8.8.8&local_ip=127.0.0.1&connect_port=2525"
SEED_DELETE_FORM = b"public_ip=8.8.8.8"

# The seed's GET output.
SEED_GET_OUTPUT = """[
    {
        "public_ip": "8.8.8.8",
        "local_ip": "127.0.0.1",
        "connect_port": "2525",
        "protocol": "nat"
    },
    {
        "public_ip": "8.8.4.4",
        "local_ip": "192.168.1.1",
        "connect_port": "2525",
        "protocol": "nat"
    }
]"""
SEED_LIST: list[dict[str, str]] = json.loads(SEED_GET_OUTPUT)
SEED_RECORD = SEED_LIST[0]


def record(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


def error(response: httpx.Response, status: int) -> str:
    """The one-sentence message of a MailerQ error body with this status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"}
    message: str = body["error"]
    assert message.endswith(".") and ". " not in message, message
    return message


def listing(client: TestClient) -> list[dict[str, str]]:
    items: list[dict[str, str]] = record(client.get(PATH))
    return items


def post(client: TestClient, body: dict[str, Any]) -> dict[str, str]:
    stored: dict[str, str] = record(client.post(PATH, json=body))
    return stored


def delete(client: TestClient, content: bytes, headers: dict[str, str]) -> httpx.Response:
    return client.request("DELETE", PATH, content=content, headers=headers)


# ---- the seed's examples ---------------------------------------------------------------


def test_seed_json_post_stores_the_seed_record(client: TestClient) -> None:
    stored = record(client.post(PATH, content=SEED_POST_JSON, headers=JSON))
    assert stored == SEED_RECORD
    assert list(stored) == ["public_ip", "local_ip", "connect_port", "protocol"]
    assert listing(client) == [SEED_RECORD]


def test_seed_form_post_stores_the_seed_record(client: TestClient) -> None:
    stored = record(client.post(PATH, content=SEED_POST_FORM, headers=FORM))
    assert stored == SEED_RECORD
    assert listing(client) == [SEED_RECORD]


def test_seed_get_output(client: TestClient) -> None:
    assert listing(client) == []
    record(client.post(PATH, content=SEED_POST_JSON, headers=JSON))
    second = b"public_ip=8.8.4.4&local_ip=192.168.1.1&connect_port=2525"
    record(client.post(PATH, content=second, headers=FORM))
    response = client.get(PATH)
    assert record(response) == SEED_LIST
    assert [list(item) for item in response.json()] == [list(item) for item in SEED_LIST]


def test_seed_form_delete(client: TestClient) -> None:
    record(client.post(PATH, content=SEED_POST_JSON, headers=JSON))
    post(client, {"public_ip": "8.8.4.4", "local_ip": "192.168.1.1", "connect_port": 2525})
    deleted = record(delete(client, SEED_DELETE_FORM, FORM))
    assert deleted == SEED_RECORD
    assert listing(client) == SEED_LIST[1:]


# ---- the seed's requests on the wire, as HTTP/1.0 ---------------------------------------


@pytest.fixture
def server(store: Store) -> Iterator[tuple[str, int]]:
    """vmta's API served by uvicorn on an ephemeral port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(
        create_app(ApiPorts(store, data_plane=None)),
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    api = uvicorn.Server(config)
    thread = threading.Thread(target=api.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not api.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert api.started, "uvicorn did not start"
    try:
        yield sock.getsockname()[:2]
    finally:
        api.should_exit = True
        thread.join(timeout=10)
        sock.close()


def seed_request(method: str, headers: list[str], body: bytes) -> bytes:
    """A request as the seed writes it (``Bearer ...`` filled in). HTTP/1.0 needs a
    Content-Length to carry a body (RFC 1945 §7.2.2), which the seed leaves out."""
    lines = [f"{method} /v1/externalmtas HTTP/1.0"]
    lines += [h.replace("Bearer ...", f"Bearer {TEST_SECRET}") for h in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def exchange(address: tuple[str, int], request: bytes) -> tuple[int, Any]:
    """Send ``request``, read until the server closes (HTTP/1.0), return status and JSON."""
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(request)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "application/json"
    return int(status_line.split()[1]), json.loads(body)


def test_seed_requests_over_http_1_0(server: tuple[str, int]) -> None:
    auth = "Authorization: Bearer ..."
    get = seed_request("GET", [auth], b"")
    post_json = seed_request("POST", ["Content-Type: application/json", auth], SEED_POST_JSON)
    post_form = seed_request(
        "POST", ["Content-Type: application/x-www-form-urlencoded", auth], SEED_POST_FORM
    )
    delete_form = seed_request(
        "DELETE", [auth, "Content-Type: application/x-www-form-urlencoded"], SEED_DELETE_FORM
    )
    assert exchange(server, get) == (200, [])
    assert exchange(server, post_json) == (200, SEED_RECORD)
    assert exchange(server, get) == (200, [SEED_RECORD])
    assert exchange(server, delete_form) == (200, SEED_RECORD)
    assert exchange(server, get) == (200, [])
    assert exchange(server, post_form) == (200, SEED_RECORD)
    assert exchange(server, get) == (200, [SEED_RECORD])
    assert exchange(server, seed_request("GET", [], b""))[0] == 401


# ---- DELETE ----------------------------------------------------------------------------


def test_delete_with_json_body(client: TestClient) -> None:
    post(client, {"public_ip": "8.8.8.8", "local_ip": "127.0.0.1", "connect_port": 2525})
    deleted = record(delete(client, b'{"public_ip": "8.8.8.8"}', JSON))
    assert deleted == SEED_RECORD
    assert listing(client) == []


def test_delete_with_query_string(client: TestClient) -> None:
    post(client, {"public_ip": "8.8.8.8", "local_ip": "127.0.0.1", "connect_port": 2525})
    assert record(client.delete(PATH, params={"public_ip": "8.8.8.8"})) == SEED_RECORD
    assert listing(client) == []


def test_delete_accepts_a_record_as_get_lists_it(client: TestClient) -> None:
    post(client, {"public_ip": "8.8.8.8", "local_ip": "127.0.0.1", "connect_port": 2525})
    (listed,) = listing(client)
    assert record(delete(client, json.dumps(listed).encode(), JSON)) == SEED_RECORD
    assert listing(client) == []


def test_delete_unknown_public_ip_is_404(client: TestClient, store: Store) -> None:
    post(client, {"public_ip": "8.8.8.8", "local_ip": "127.0.0.1", "connect_port": 2525})
    before = snapshot(store)
    message = error(delete(client, b"public_ip=8.8.4.4", FORM), 404)
    assert "8.8.4.4" in message
    assert snapshot(store) == before


@pytest.mark.one_database  # request validation only: the database adds nothing
@pytest.mark.parametrize(
    ("content", "headers", "params", "status", "fragment"),
    [
        (b"", {}, {}, 400, "public_ip is required"),
        (b"local_ip=127.0.0.1", FORM, {}, 400, "public_ip is required"),
        (b"public_ip=example.com", FORM, {}, 400, "public_ip must be an IPv4 or IPv6 address"),
        (b'{"public_ip": 8}', JSON, {}, 400, "public_ip must be a string, not a number"),
        (b'{"public_ip": "8.8.8.8", "foo": 1}', JSON, {}, 400, "foo is not a known field"),
        (b"{", JSON, {}, 400, "not valid JSON"),
        (b"public_ip=8.8.8.8", {"Content-Type": "text/plain"}, {}, 415, "text/plain"),
        (b"public_ip=8.8.8.8", {}, {}, 415, "no Content-Type"),
        (b"public_ip=8.8.8.8", FORM, {"public_ip": "8.8.4.4"}, 400, "different values"),
        (b"", {}, {"public_ip": "8.8.8.8", "x": "1"}, 400, "x is not a known field"),
    ],
)
def test_bad_delete_changes_nothing(
    client: TestClient,
    store: Store,
    content: bytes,
    headers: dict[str, str],
    params: dict[str, str],
    status: int,
    fragment: str,
) -> None:
    post(client, {"public_ip": "8.8.8.8", "local_ip": "127.0.0.1", "connect_port": 2525})
    before = snapshot(store)
    response = client.request("DELETE", PATH, content=content, headers=headers, params=params)
    assert fragment in error(response, status)
    assert snapshot(store) == before
    assert listing(client) == [SEED_RECORD]


def test_delete_names_the_address_in_any_spelling(client: TestClient) -> None:
    post(client, {"public_ip": "2001:db8::1", "local_ip": "::1", "connect_port": 25})
    deleted = record(delete(client, b"public_ip=2001%3ADB8%3A0%3A%3A0001", FORM))
    assert deleted["public_ip"] == "2001:db8::1"


# ---- POST: defaults, typing, replace ---------------------------------------------------


def test_connect_port_as_json_number_is_written_as_string(client: TestClient) -> None:
    stored = post(client, {"public_ip": "8.8.8.8", "local_ip": "127.0.0.1", "connect_port": 2525})
    assert stored == SEED_RECORD and stored["connect_port"] == "2525"


@pytest.mark.parametrize("protocol", ["nat", "socks", "http"])
def test_every_protocol(client: TestClient, protocol: str) -> None:
    body = f"public_ip=8.8.8.8&local_ip=127.0.0.1&connect_port=1080&protocol={protocol}"
    stored = record(client.post(PATH, content=body.encode(), headers=FORM))
    assert stored["protocol"] == protocol
    assert listing(client) == [stored]


@pytest.mark.parametrize(
    ("sent", "stored"), [("Nat", "nat"), ("SOCKS", "socks"), ("hTtP", "http"), ("nat", "nat")]
)
def test_protocol_in_any_letter_case_is_stored_lower_case(
    client: TestClient, sent: str, stored: str
) -> None:
    """The only public MailerQ SDK sends ``"Nat"``; JSON and form alike."""
    as_json = post(
        client,
        {"public_ip": "8.8.8.8", "local_ip": "127.0.0.1", "connect_port": 25, "protocol": sent},
    )
    assert as_json["protocol"] == stored
    body = f"public_ip=8.8.4.4&local_ip=127.0.0.1&connect_port=25&protocol={sent}"
    as_form = record(client.post(PATH, content=body.encode(), headers=FORM))
    assert as_form["protocol"] == stored
    assert [r["protocol"] for r in listing(client)] == [stored, stored]


def test_connect_ip_appears_only_when_set(client: TestClient) -> None:
    with_proxy = post(
        client,
        {
            "public_ip": "8.8.8.8",
            "local_ip": "127.0.0.1",
            "connect_ip": "127.0.0.2",
            "connect_port": 1080,
            "protocol": "socks",
        },
    )
    assert list(with_proxy) == ["public_ip", "local_ip", "connect_ip", "connect_port", "protocol"]
    assert with_proxy["connect_ip"] == "127.0.0.2"
    assert listing(client) == [with_proxy]
    for empty in ({}, {"connect_ip": None}, {"connect_ip": ""}):
        body = {"public_ip": "8.8.8.8", "local_ip": "127.0.0.1", "connect_port": 1080, **empty}
        assert "connect_ip" not in post(client, body)
        assert "connect_ip" not in listing(client)[0]


def test_post_of_an_existing_public_ip_replaces_it_in_place(
    client: TestClient, store: Store
) -> None:
    post(client, {"public_ip": "8.8.8.8", "local_ip": "127.0.0.1", "connect_port": 2525})
    post(client, {"public_ip": "8.8.4.4", "local_ip": "192.168.1.1", "connect_port": 2525})
    replacement = {
        "public_ip": "8.8.8.8",
        "local_ip": "127.0.0.9",
        "connect_ip": "127.0.0.10",
        "connect_port": "1080",
        "protocol": "http",
    }
    stored = record(client.post(PATH, content=json.dumps(replacement).encode(), headers=JSON))
    assert stored == replacement
    assert listing(client) == [replacement, SEED_LIST[1]]
    assert len(snapshot(store)["external_mtas"]) == 2


def test_list_is_in_creation_order(client: TestClient) -> None:
    addresses = ["9.9.9.9", "1.1.1.1", "2001:db8::5", "5.5.5.5"]
    for address in addresses:
        post(client, {"public_ip": address, "local_ip": "127.0.0.1", "connect_port": 25})
    assert [item["public_ip"] for item in listing(client)] == addresses


def test_ipv6_is_stored_canonically_and_replaced_under_any_spelling(client: TestClient) -> None:
    stored = post(
        client,
        {
            "public_ip": "2001:DB8::0001",
            "local_ip": "0:0:0:0:0:0:0:1",
            "connect_ip": "2001:db8:0:0::2",
            "connect_port": 1080,
            "protocol": "socks",
        },
    )
    assert stored == {
        "public_ip": "2001:db8::1",
        "local_ip": "::1",
        "connect_ip": "2001:db8::2",
        "connect_port": "1080",
        "protocol": "socks",
    }
    post(client, {"public_ip": "2001:db8:0::1", "local_ip": "::1", "connect_port": 25})
    assert listing(client) == [
        {"public_ip": "2001:db8::1", "local_ip": "::1", "connect_port": "25", "protocol": "nat"}
    ]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json; charset=utf-8",
        "Application/JSON",
    ],
)
def test_json_content_type_parameters_and_case(client: TestClient, content_type: str) -> None:
    response = client.post(PATH, content=SEED_POST_JSON, headers={"Content-Type": content_type})
    assert record(response) == SEED_RECORD


def test_form_values_are_percent_decoded(client: TestClient) -> None:
    body = b"public_ip=2001%3Adb8%3A%3A1&local_ip=%3A%3A1&connect_port=25&protocol=nat&"
    assert record(client.post(PATH, content=body, headers=FORM))["public_ip"] == "2001:db8::1"


# ---- bad input -------------------------------------------------------------------------

SEED_FIELDS: dict[str, Any] = {
    "public_ip": "8.8.8.8",
    "local_ip": "127.0.0.1",
    "connect_port": "2525",
}


def _json(**changes: Any) -> bytes:
    body = {**SEED_FIELDS, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


BAD_POSTS: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("no public_ip", _json(public_ip=...), JSON, 400, "public_ip is required"),
    ("no local_ip", _json(local_ip=...), JSON, 400, "local_ip is required"),
    ("no connect_port", _json(connect_port=...), JSON, 400, "connect_port is required"),
    ("null local_ip", _json(local_ip=None), JSON, 400, "local_ip is required"),
    (
        "form no public_ip",
        b"local_ip=127.0.0.1&connect_port=2525",
        FORM,
        400,
        "public_ip is required",
    ),
    (
        "form no local_ip",
        b"public_ip=8.8.8.8&connect_port=2525",
        FORM,
        400,
        "local_ip is required",
    ),
    (
        "form no connect_port",
        b"public_ip=8.8.8.8&local_ip=127.0.0.1",
        FORM,
        400,
        "connect_port is required",
    ),
    (
        "form empty public_ip",
        b"public_ip=&local_ip=127.0.0.1&connect_port=2525",
        FORM,
        400,
        "public_ip is required",
    ),
    ("hostname", _json(public_ip="mta.example.com"), JSON, 400, "public_ip must be an IPv4"),
    ("bad ipv4", _json(local_ip="127.0.0.256"), JSON, 400, "local_ip must be an IPv4"),
    ("bad connect_ip", _json(connect_ip="proxy"), JSON, 400, "connect_ip must be an IPv4"),
    ("zone id", _json(local_ip="fe80::1%eth0"), JSON, 400, "local_ip must be an IPv4"),
    ("padded ip", _json(public_ip=" 8.8.8.8"), JSON, 400, "public_ip must be an IPv4"),
    ("ip as number", _json(public_ip=8), JSON, 400, "public_ip must be a string"),
    ("port 0", _json(connect_port=0), JSON, 400, "connect_port must be an integer from 1"),
    ("port 70000", _json(connect_port=70000), JSON, 400, "connect_port must be an integer"),
    ("port '0'", _json(connect_port="0"), JSON, 400, "connect_port must be an integer"),
    ("port '70000'", _json(connect_port="70000"), JSON, 400, "not 70000"),
    ("port -1", _json(connect_port=-1), JSON, 400, "connect_port must be an integer"),
    ("port float", _json(connect_port=25.5), JSON, 400, "not a number"),
    ("port bool", _json(connect_port=True), JSON, 400, "not a boolean"),
    ("port text", _json(connect_port="25a"), JSON, 400, "not '25a'"),
    ("port signed", _json(connect_port="+25"), JSON, 400, "connect_port must be an integer"),
    (
        "form port 0",
        b"public_ip=8.8.8.8&local_ip=127.0.0.1&connect_port=0",
        FORM,
        400,
        "connect_port must be an integer from 1 to 65535",
    ),
    (
        "form port 70000",
        b"public_ip=8.8.8.8&local_ip=127.0.0.1&connect_port=70000",
        FORM,
        400,
        "connect_port must be an integer from 1 to 65535",
    ),
    ("protocol", _json(protocol="smtp"), JSON, 400, "protocol must be 'nat', 'socks' or 'http'"),
    ("protocol type", _json(protocol=1), JSON, 400, "protocol must be a string"),
    ("unknown field", _json(conect_ip="127.0.0.2"), JSON, 400, "conect_ip is not a known"),
    ("text/plain", SEED_POST_FORM, {"Content-Type": "text/plain"}, 415, "text/plain"),
    ("xml", b"<x/>", {"Content-Type": "application/xml"}, 415, "application/xml"),
    (
        "multipart",
        b"--b\r\n\r\n--b--",
        {"Content-Type": "multipart/form-data; boundary=b"},
        415,
        "multipart/form-data",
    ),
    ("no content type", SEED_POST_JSON, {}, 415, "no Content-Type"),
    ("truncated JSON", SEED_POST_JSON[:-1], JSON, 400, "not valid JSON"),
    ("form as JSON", SEED_POST_FORM, JSON, 400, "not valid JSON"),
    ("JSON array", b"[" + SEED_POST_JSON + b"]", JSON, 400, "must be a JSON object"),
    ("JSON string", b'"8.8.8.8"', JSON, 400, "must be a JSON object"),
    ("NaN", b'{"public_ip": "8.8.8.8", "connect_port": NaN}', JSON, 400, "not valid JSON"),
    ("not UTF-8", b'{"public_ip": "\xff"}', JSON, 400, "not valid JSON"),
    (
        "duplicate JSON key",
        b'{"public_ip": "8.8.8.8", "public_ip": "8.8.4.4"}',
        JSON,
        400,
        "public_ip is given more than once",
    ),
    (
        "duplicate form key",
        SEED_POST_FORM + b"&connect_port=25",
        FORM,
        400,
        "connect_port is given more than once",
    ),
    ("form without =", b"public_ip", FORM, 400, "has no '=value'"),
    ("form bad escape", b"public_ip=%ff", FORM, 400, "not UTF-8"),
    ("empty JSON object", b"{}", JSON, 400, "public_ip is required"),
]


@pytest.mark.one_database  # request validation only: the database adds nothing
@pytest.mark.parametrize(
    ("content", "headers", "status", "fragment"),
    [case[1:] for case in BAD_POSTS],
    ids=[case[0] for case in BAD_POSTS],
)
def test_bad_post_gets_one_sentence_and_changes_nothing(
    client: TestClient,
    store: Store,
    content: bytes,
    headers: dict[str, str],
    status: int,
    fragment: str,
) -> None:
    # A record with the same public_ip exists, so a partial replace would show.
    existing = post(client, {"public_ip": "8.8.8.8", "local_ip": "10.0.0.1", "connect_port": 25})
    before = snapshot(store)
    message = error(client.post(PATH, content=content, headers=headers), status)
    assert fragment in message
    assert snapshot(store) == before
    assert listing(client) == [existing]


def test_every_problem_in_one_sentence(client: TestClient) -> None:
    message = error(client.post(PATH, content=b"{}", headers=JSON), 400)
    assert message == "public_ip is required; local_ip is required; connect_port is required."
    body = b"public_ip=1.2.3&local_ip=127.0.0.1&connect_port=0&protocol=ftp&extra=1"
    message = error(client.post(PATH, content=body, headers=FORM), 400)
    assert message == (
        "extra is not a known field (known fields: public_ip, local_ip, connect_ip,"
        " connect_port, protocol); public_ip must be an IPv4 or IPv6 address, not '1.2.3';"
        " connect_port must be an integer from 1 to 65535, not 0;"
        " protocol must be 'nat', 'socks' or 'http', not 'ftp'."
    )
    message = error(client.post(PATH, content=b'{"local_ip": "x"}', headers=JSON), 400)
    assert message == (
        "public_ip is required; local_ip must be an IPv4 or IPv6 address, not 'x';"
        " connect_port is required."
    )


def test_huge_values_are_not_echoed_whole(client: TestClient) -> None:
    body = _json(connect_port=10**200, public_ip="9" * 5000)
    message = error(client.post(PATH, content=body, headers=JSON), 400)
    assert len(message) < 300
    assert message.startswith("public_ip must be an IPv4 or IPv6 address, not '999")


# ---- credentials, methods, paths -------------------------------------------------------


def _basic(name: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()


@pytest.mark.one_database  # request validation only: the database adds nothing
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", _basic("admin", "wrong"), _basic("nobody", TEST_SECRET)],
)
@pytest.mark.parametrize(
    ("method", "content", "headers"),
    [
        ("GET", b"", {}),
        ("POST", SEED_POST_FORM, FORM),
        ("DELETE", SEED_DELETE_FORM, FORM),
    ],
)
def test_missing_or_wrong_credentials_get_401(
    anonymous: TestClient,
    client: TestClient,
    store: Store,
    authorization: str | None,
    method: str,
    content: bytes,
    headers: dict[str, str],
) -> None:
    post(client, {"public_ip": "8.8.8.8", "local_ip": "10.0.0.1", "connect_port": 25})
    before = snapshot(store)
    if authorization is not None:
        headers = {**headers, "Authorization": authorization}
    response = anonymous.request(method, PATH, content=content, headers=headers)
    error(response, 401)
    assert "WWW-Authenticate" in response.headers
    assert snapshot(store) == before


def test_basic_credentials_are_accepted(anonymous: TestClient) -> None:
    headers = {**FORM, "Authorization": _basic("admin", TEST_SECRET)}
    assert record(anonymous.post(PATH, content=SEED_POST_FORM, headers=headers)) == SEED_RECORD
    response = anonymous.get(PATH, headers={"Authorization": _basic("admin", TEST_SECRET)})
    assert record(response) == [SEED_RECORD]


@pytest.mark.one_database  # request validation only: the database adds nothing
@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS"])
def test_other_methods_get_405(client: TestClient, store: Store, method: str) -> None:
    before = snapshot(store)
    response = client.request(method, PATH, content=SEED_POST_FORM, headers=FORM)
    assert method in error(response, 405)
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST", "DELETE"}
    assert snapshot(store) == before


def test_unknown_v1_path_gets_404(client: TestClient) -> None:
    assert "/v1/nothing" in error(client.get("/v1/nothing"), 404)
    error(client.get(PATH + "/8.8.8.8"), 404)


def test_openapi_describes_the_endpoints(client: TestClient) -> None:
    document = record(client.get("/openapi.json"))
    operations = document["paths"][PATH]
    assert set(operations) == {"get", "post", "delete"}
    for method in ("post", "delete"):
        content = operations[method]["requestBody"]["content"]
        assert set(content) == {"application/json", "application/x-www-form-urlencoded"}
    common = {"400", "401", "404", "405", "413", "503"}
    assert set(operations["post"]["responses"]) == {"200", "415", *common}
    assert set(operations["delete"]["responses"]) == {"200", "415", *common}
    assert operations["delete"]["parameters"][0]["name"] == "public_ip"
    listed = operations["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed["type"] == "array"
    assert listed["items"]["properties"]["connect_port"]["type"] == "string"
