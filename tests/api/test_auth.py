"""Authentication (contract §1): Bearer and Basic, hashed secrets, 401 for the rest."""

from __future__ import annotations

import base64

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed
from tests.conftest import TEST_SECRET
from vmta.api.dependencies import app_context
from vmta.domain.config.credential import hash_chosen_secret, hash_secret
from vmta.store.credentials import CredentialRepository
from vmta.store.store import Store


def basic(name: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()


def test_health_needs_no_credentials(anonymous: TestClient) -> None:
    response = anonymous.get("/api/health")
    assert response.status_code == 200 and response.json() == {"status": "ok", "dependencies": {}}


@pytest.mark.one_database  # request validation only: the database adds nothing
@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer wrong",
        "Bearer ",
        f"Token {TEST_SECRET}",
        basic("admin", "wrong"),
        basic("someone", TEST_SECRET),
        "Basic !!!notbase64",
        "Basic " + base64.b64encode(b"no-colon").decode(),
    ],
)
@pytest.mark.parametrize(
    "path", [f"{GA}/relay_servers", f"{GA}/nonexistent", "/openapi.json", "/docs", "/api/queue"]
)
def test_everything_else_needs_credentials(
    anonymous: TestClient, header: str | None, path: str
) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = anonymous.get(path, headers=headers)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response.headers
    if path.startswith(GA):
        failed(response, 401, "unauthorized")
    else:
        assert set(response.json()) == {"error"}


def test_bearer_and_basic_are_accepted(anonymous: TestClient) -> None:
    for header in (f"Bearer {TEST_SECRET}", basic("admin", TEST_SECRET)):
        response = anonymous.get(f"{GA}/relay_servers", headers={"Authorization": header})
        assert response.status_code == 200, response.text


def test_only_a_hash_is_stored(store: Store) -> None:
    with store.read() as conn:
        records = CredentialRepository(conn).all()
    assert [r.secret_sha256 for r in records] == [hash_secret(TEST_SECRET)]
    assert all(TEST_SECRET not in r.secret_sha256 for r in records)


def test_revoked_credential_stops_working(anonymous: TestClient, store: Store) -> None:
    with store.write() as conn:
        CredentialRepository(conn).put("ops", hash_secret("vmta_ops-secret-value-long-enough"))
    header = {"Authorization": "Bearer vmta_ops-secret-value-long-enough"}
    assert anonymous.get(f"{GA}/relay_servers", headers=header).status_code == 200
    with store.write() as conn:
        CredentialRepository(conn).remove("ops")
    app_context(anonymous.app).authenticator._cache.clear()  # skip the positive cache
    assert anonymous.get(f"{GA}/relay_servers", headers=header).status_code == 401


# ---- scopes (contract §4) ------------------------------------------------------------------

SUBMIT_SECRET = "vmta_submit-0123456789abcdefghijklmnopqrstuvwxyzABCD"


@pytest.mark.parametrize(
    "path", [f"{GA}/relay_servers", "/v1/externalmtas", "/api/queue", "/openapi.json"]
)
def test_submit_credential_gets_403_outside_injection(
    anonymous: TestClient, store: Store, path: str
) -> None:
    with store.write() as conn:
        CredentialRepository(conn).put("sender", hash_secret(SUBMIT_SECRET), "submit")
    for header in (f"Bearer {SUBMIT_SECRET}", basic("sender", SUBMIT_SECRET)):
        response = anonymous.get(path, headers={"Authorization": header})
        assert response.status_code == 403, response.text
        if path.startswith(GA):
            failed(response, 403, "forbidden")
        else:
            assert set(response.json()) == {"error"}
    # The admin credential still reads it.
    admin = anonymous.get(path, headers={"Authorization": f"Bearer {TEST_SECRET}"})
    assert admin.status_code == 200


def test_operator_chosen_secret_is_salted_and_still_accepted(
    anonymous: TestClient, store: Store
) -> None:
    chosen = "correct-horse-battery-staple-42"
    with store.write() as conn:
        CredentialRepository(conn).put("ops", hash_chosen_secret(chosen))
        stored = CredentialRepository(conn).by_name("ops")
    assert stored is not None and stored.secret_sha256.startswith("scrypt$")
    for header in (f"Bearer {chosen}", basic("ops", chosen)):
        response = anonymous.get(f"{GA}/relay_servers", headers={"Authorization": header})
        assert response.status_code == 200, response.text
    wrong = anonymous.get(f"{GA}/relay_servers", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
