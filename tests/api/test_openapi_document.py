"""/openapi.json says what each operation really answers: the family's error answers on
every operation, every query parameter the handlers read, no 422 (FastAPI never
validates vmta's requests), and the health check as the one public operation."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.helpers import GA


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def test_every_operation_declares_its_errors_and_no_422(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for path, method, operation in operations(document):
        responses = operation["responses"]
        assert "422" not in responses, (method, path)
        wanted = (
            {"405", "413"} if path == "/api/health" else {"400", "401", "404", "405", "413", "503"}
        )
        assert wanted <= set(responses), (method, path, sorted(responses))
        error = responses["413"]["content"]["application/json"]["schema"]
        if path.startswith(GA):
            assert error["required"] == ["success", "data", "error_code", "error_messages"]
        else:
            assert error["required"] == ["error"]
    health = document["paths"]["/api/health"]["get"]
    assert health["security"] == []


def query_parameters(document: dict[str, Any], path: str) -> set[str]:
    parameters = document["paths"][path]["get"].get("parameters", [])
    return {p["name"] for p in parameters if p["in"] == "query"}


def test_query_parameters_are_declared(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    page = {"page", "per_page", "page_token"}
    assert query_parameters(document, f"{GA}/ip_addresses") == page | {"name", "ip", "hostname"}
    for plural in ("relay_servers", "routing_rules", "throttling_templates", "virtual_mtas"):
        assert query_parameters(document, f"{GA}/{plural}") == page | {"name"}, plural
    assert query_parameters(document, "/api/messages") == {
        "state", "limit", "recipient", "sender", "message_id"
    }  # fmt: skip


def test_creates_link_to_the_new_record(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    links = document["paths"][f"{GA}/relay_servers"]["post"]["responses"]["200"]["links"]
    targets = {link["parameters"]["record_id"] for link in links.values()}
    assert targets == {"$response.body#/data/relay_server/id"}
    assert len(links) == 4  # GET, PUT, DELETE of the record, and used_by


def test_own_paths_answer_405_with_every_method(client: TestClient) -> None:
    response = client.options("/api/messages/0123456789ABCDEF0123")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, DELETE"
    assert response.json() == {
        "error": "Method OPTIONS is not supported on /api/messages/0123456789ABCDEF0123."
    }
