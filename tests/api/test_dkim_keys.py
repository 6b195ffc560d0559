"""DKIM keys (contract §2.13 as vmta writes it in docs/dkim.md): the requests of the real
GreenArrow clients as they send them, generated and imported keys whose published DNS
value matches the private key, one default per domain, and every bad input refused at
once with nothing stored. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed, ok, snapshot
from vmta.store.dkim_keys import DkimKeyRepository
from vmta.store.store import Store

URL = f"{GA}/dkim_keys"


def create(client: TestClient, **record: Any) -> dict[str, Any]:
    key: dict[str, Any] = ok(client.post(URL, json={"dkim_key": record}))["dkim_key"]
    return key


def rsa_pem(bits: int = 1024, pkcs1: bool = False) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    form = (
        serialization.PrivateFormat.TraditionalOpenSSL
        if pkcs1
        else serialization.PrivateFormat.PKCS8
    )
    return key.private_bytes(
        serialization.Encoding.PEM, form, serialization.NoEncryption()
    ).decode()


def public_of(pem: str) -> str:
    key = serialization.load_pem_private_key(pem.encode(), None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return base64.b64encode(raw).decode()
    assert isinstance(key, rsa.RSAPrivateKey)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def test_python_client_generates_and_publishes(client: TestClient) -> None:
    body = {
        "dkim_key": {
            "domain": "example.com",
            "selector": "default",
            "default_for_domain": True,
            "key": {"bits": 1024},
        }
    }
    key = ok(client.post(URL, json=body))["dkim_key"]
    assert set(key) == {"id", "domain", "selector", "default_for_domain", "key", "dns"}
    assert key["key"]["bits"] == 1024 and key["key"]["type"] == "rsa"
    assert key["key"]["private"].startswith("-----BEGIN PRIVATE KEY-----")
    assert key["key"]["public"] == public_of(key["key"]["private"])
    assert key["dns"] == {
        "public_key": {
            "name": "default._domainkey.example.com",
            "type": "TXT",
            "value": f"k=rsa; p={key['key']['public']}",
        }
    }
    assert ok(client.get(f"{URL}/{key['id']}"))["dkim_key"] == key


def test_php_string_bits_and_dotnet_credentials_without_content_type(
    client: TestClient,
) -> None:
    body = {
        "username": "someone",
        "password": "secret",
        "dkim_key": {"domain": "Mail.Example.com", "selector": "s1", "key": {"bits": "1024"}},
    }
    response = client.post(URL, content=json.dumps(body).encode())  # no Content-Type
    key = ok(response)["dkim_key"]
    assert key["key"]["bits"] == 1024 and key["domain"] == "Mail.Example.com"


def test_list_rows_never_carry_a_private_key(client: TestClient) -> None:
    one = create(client, domain="a.example", selector="one", key={"bits": 1024})
    two = create(client, domain="B.example", selector="two", key={"type": "ed25519"})
    data = ok(client.get(URL))
    assert data["dkim_keys"] == [
        {"id": one["id"], "domain": "a.example", "selector": "one",
         "default_for_domain": False, "key_bits": 1024},
        {"id": two["id"], "domain": "B.example", "selector": "two",
         "default_for_domain": False, "key_bits": 256},
    ]  # fmt: skip
    assert data["pagination"]["num_records"] == 2
    text = client.get(URL).text
    assert "PRIVATE" not in text and one["key"]["public"] not in text
    filtered = ok(client.get(URL, params={"domain": "b.EXAMPLE"}))["dkim_keys"]
    assert [row["id"] for row in filtered] == [two["id"]]
    paged = ok(client.get(URL, params={"per_page": 1}))
    token = paged["pagination"]["next_page_token"]
    second = ok(client.get(URL, params={"page_token": token}))["dkim_keys"]
    assert [row["id"] for row in second] == [two["id"]]


def test_imports_pkcs1_and_pkcs8_rsa_and_ed25519(client: TestClient) -> None:
    pkcs1 = rsa_pem(1024, pkcs1=True)
    assert pkcs1.startswith("-----BEGIN RSA PRIVATE KEY-----")
    one = create(client, domain="example.com", selector="pkcs1", key={"private": pkcs1})
    assert one["key"]["bits"] == 1024 and one["key"]["public"] == public_of(pkcs1)
    pkcs8 = rsa_pem(2048)
    two = create(client, domain="example.com", selector="pkcs8", key={"private": pkcs8})
    assert two["key"]["bits"] == 2048 and two["key"]["public"] == public_of(pkcs8)
    edkey = (
        ed25519.Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    three = create(client, domain="example.com", selector="ed", key={"private": edkey})
    assert three["key"]["type"] == "ed25519"
    assert three["dns"]["public_key"]["value"] == f"k=ed25519; p={public_of(edkey)}"
    assert len(base64.b64decode(three["key"]["public"])) == 32  # RFC 8463 §4: the raw key


def test_one_default_per_domain_and_selectors_unique_ignoring_case(
    client: TestClient, store: Store
) -> None:
    first = create(
        client, domain="example.com", selector="old", default_for_domain=True, key={"bits": 1024}
    )
    second = create(
        client, domain="EXAMPLE.com", selector="new", default_for_domain=True,
        key={"type": "ed25519"},
    )  # fmt: skip
    assert ok(client.get(f"{URL}/{first['id']}"))["dkim_key"]["default_for_domain"] is False
    other = create(
        client, domain="other.com", selector="OLD", default_for_domain=True, key={"bits": 1024}
    )
    assert other["default_for_domain"] is True
    before = snapshot(store)
    messages = failed(
        client.post(URL, json={"dkim_key": {"domain": "Example.COM", "selector": "OLD",
                                            "key": {"bits": 1024}}}),
        400, "validation_failed",
    )  # fmt: skip
    assert any("selector 'OLD' is already used" in m for m in messages)
    # A PUT onto a taken selector is refused too; making the first default again works.
    failed(
        client.put(f"{URL}/{second['id']}", json={"dkim_key": {"selector": "Old"}}),
        400, "validation_failed",
    )  # fmt: skip
    assert snapshot(store) == before
    updated = ok(
        client.put(f"{URL}/{first['id']}", json={"dkim_key": {"default_for_domain": True}})
    )
    assert updated["dkim_key"]["default_for_domain"] is True
    with store.read() as conn:
        rows = {row.selector: row.default_for_domain for row in DkimKeyRepository(conn).list()}
    assert rows == {"old": True, "new": False, "OLD": True}


def test_put_changes_fields_and_key_but_never_bits(client: TestClient, store: Store) -> None:
    key = create(client, domain="example.com", selector="s1", key={"bits": 1024})
    url = f"{URL}/{key['id']}"
    # The whole record of a GET sent back is accepted (read-only parts ignored).
    assert ok(client.put(url, json={"dkim_key": key}))["dkim_key"] == key
    before = snapshot(store)
    messages = failed(
        client.put(url, json={"dkim_key": {"key": {"bits": 2048}}}), 400, "validation_failed"
    )
    assert messages == ["key.bits cannot change: the key has 1024 bits"]
    assert snapshot(store) == before
    pem = rsa_pem(2048)
    changed = ok(client.put(url, json={"dkim_key": {"selector": "s2", "key": {"private": pem}}}))[
        "dkim_key"
    ]
    assert changed["selector"] == "s2" and changed["key"]["bits"] == 2048
    assert changed["key"]["public"] == public_of(pem)
    assert changed["dns"]["public_key"]["name"] == "s2._domainkey.example.com"
    assert ok(client.delete(url)) == {}
    failed(client.get(url), 404, "not_found")
    failed(client.delete(url), 404, "not_found")


BAD_RECORDS: list[tuple[dict[str, Any], list[str]]] = [
    (
        {"domain": "-bad.com", "selector": "a b", "key": {"bits": 512}, "extra": 1},
        ["extra is not a known field", "domain must be dot-separated", "selector may hold only",
         "key.bits must be an integer from 1024 to 8192"],
    ),
    ({"selector": "s", "key": {"bits": 1024}}, ["domain is required"]),
    ({"domain": "a.com", "key": {"bits": 1024}}, ["selector is required"]),
    ({"domain": "a.com", "selector": "s"}, ["key is required"]),
    ({"domain": "a.com", "selector": "s", "key": {}}, ["key must give bits"]),
    ({"domain": "a..com", "selector": "s", "key": {"bits": "abc"}},
     ["domain must be dot-separated", "key.bits must be an integer"]),
    ({"domain": "a.com", "selector": "s", "key": {"bits": 9000}}, ["key.bits must be"]),
    ({"domain": "a.com", "selector": "s", "key": {"bits": True}}, ["key.bits must be"]),
    ({"domain": "a" * 201, "selector": "s" * 201, "key": {"bits": 1024}},
     ["domain must be from 1 to 200", "selector must be from 1 to 200"]),
    ({"domain": "a.com", "selector": "s", "key": {"private": "not a key"}},
     ["key.private must be a PEM private key"]),
    ({"domain": "a.com", "selector": "s",
      "key": {"private": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}},
     ["key.private is not a readable PEM private key"]),
    ({"domain": "a.com", "selector": "s", "key": {"type": "dsa"}},
     ["key.type must be one of", "key must give bits"]),
    ({"domain": "a.com", "selector": "s", "key": {"type": "ed25519", "bits": 1024}},
     ["key.bits must be absent for an ed25519 key"]),
    ({"domain": "a.com", "selector": "s", "default_for_domain": "yes", "key": {"bits": 1024}},
     ["default_for_domain must be true or false"]),
    ({"domain": "a.com", "selector": "s", "key": {"bits": " 1024", "public": 7}},
     ["key.bits must be an integer", "key.public must be a string"]),
    ({"domain": "a.com", "selector": "s", "key": {"type": None, "bits": None, "private": None}},
     ["key.type must be one of", "key.bits must be an integer", "key.private must be a PEM"]),
    ({"domain": 5, "selector": None, "key": []},
     ["domain must be a string", "selector must be a string", "key must be a hash"]),
]  # fmt: skip


@pytest.mark.one_database
@pytest.mark.parametrize(("record", "expected"), BAD_RECORDS)
def test_bad_records_are_refused_at_once_with_nothing_stored(
    client: TestClient, store: Store, record: dict[str, Any], expected: list[str]
) -> None:
    before = snapshot(store)
    messages = failed(client.post(URL, json={"dkim_key": record}), 400, "validation_failed")
    for fragment in expected:
        assert any(m.startswith(fragment) for m in messages), (fragment, messages)
    assert len(messages) == len(expected)
    assert snapshot(store) == before


@pytest.mark.one_database
def test_imported_key_too_small_and_mismatched_bits(client: TestClient, store: Store) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = rsa_pem(1024)
    before = snapshot(store)
    messages = failed(
        client.post(URL, json={"dkim_key": {"domain": "a.com", "selector": "s",
                                            "key": {"private": pem, "bits": 2048}}}),
        400, "validation_failed",
    )  # fmt: skip
    assert messages == ["key.bits is 2048, but the imported key has 1024 bits"]
    assert small.key_size == 1024
    assert snapshot(store) == before


@pytest.mark.one_database
def test_malformed_bodies(client: TestClient, store: Store) -> None:
    before = snapshot(store)
    failed(client.post(URL, content=b"{"), 400, "invalid_request")
    failed(client.post(URL, json=[]), 400, "invalid_request")
    failed(client.post(URL, json={"username": "x"}), 400, "invalid_request")
    failed(client.post(URL, json={"dkim_key": "x"}), 400, "invalid_request")
    failed(client.get(f"{URL}/99999999999"), 404, "not_found")
    failed(client.get(URL, params={"page_token": "nope"}), 400, "invalid_request")
    assert snapshot(store) == before


@pytest.mark.one_database
def test_private_key_is_in_no_error_text(client: TestClient) -> None:
    pem = rsa_pem(1024)
    body_line = pem.splitlines()[3]
    broken = pem.replace(body_line, body_line[::-1])
    response = client.post(
        URL, json={"dkim_key": {"domain": "a.com", "selector": "s", "key": {"private": broken}}}
    )
    failed(response, 400, "validation_failed")
    assert body_line not in response.text and body_line[::-1] not in response.text
