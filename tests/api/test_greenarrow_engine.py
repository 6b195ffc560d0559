"""The GreenArrow family as a whole: how the OpenAPI document names its operations, and
405 answers whose ``Allow`` names every method of the path (RFC 7231 §6.5.5)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed

HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE")


def greenarrow_paths(client: TestClient) -> dict[str, set[str]]:
    """Each GreenArrow path of the OpenAPI document with the methods it documents."""
    paths = client.get("/openapi.json").json()["paths"]
    return {
        path: {method.upper() for method in operations}
        for path, operations in paths.items()
        if path.startswith(GA + "/")
    }


def allowed(header: str) -> set[str]:
    return {method.strip() for method in header.split(",")}


def test_openapi_summaries_name_records_properly(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    def summaries(resource: str) -> list[str]:
        return [
            operation["summary"]
            for path in (f"{GA}/{resource}", f"{GA}/{resource}/{{record_id}}")
            for operation in paths[path].values()
        ]

    assert summaries("ip_addresses") == [
        "List IP addresses",
        "Create an IP address",
        "Get one IP address",
        "Update an IP address (only the fields given)",
        "Delete an IP address (refused while it is used)",
    ]
    assert summaries("relay_servers") == [
        "List relay servers",
        "Create a relay server",
        "Get one relay server",
        "Update a relay server (only the fields given)",
        "Delete a relay server (refused while it is used)",
    ]
    assert summaries("routing_rules")[:2] == ["List routing rules", "Create a routing rule"]


def test_not_found_names_the_record_properly(client: TestClient) -> None:
    messages = failed(client.get(f"{GA}/ip_addresses/424242"), 404, "not_found")
    assert messages == ["No IP address with id 424242."]


@pytest.mark.one_database  # request validation only: the database adds nothing
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PATCH", "/relay_servers", "GET, POST"),
        ("POST", "/relay_servers/1", "GET, PUT, DELETE"),
        ("OPTIONS", "/ip_addresses", "GET, POST"),
        ("PATCH", "/routing_rules/1", "GET, PUT, DELETE"),
        ("PUT", "/throttling_templates", "GET, POST"),
        ("POST", "/throttling_templates/7", "GET, PUT, DELETE"),
        ("DELETE", "/virtual_mtas", "GET"),
        ("DELETE", "/virtual_mtas/default", "GET, PUT"),
        ("PUT", "/virtual_mtas/1/used_by", "GET"),
        ("PROPFIND", "/ip_addresses/5", "GET, PUT, DELETE"),  # an extension method
    ],
)
def test_405_lists_every_method_of_the_path(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, GA + path)
    messages = failed(response, 405, "invalid_request")
    assert messages == [f"Method {method} is not supported on {GA}{path}."]
    assert response.headers["allow"] == allow


def test_every_greenarrow_path_answers_405_with_its_documented_methods(
    client: TestClient,
) -> None:
    paths = greenarrow_paths(client)
    # relay, IP, rule and template paths, three of virtual_mtas, three of throttle
    # programs, four of throttles and the rule rows of templates and IP addresses (20);
    # DKIM keys (2); incoming email domains and their three kinds of mailboxes (8); the
    # disk queue summary (1)
    assert len(paths) == 31
    for template, documented in paths.items():
        path = (
            template.replace("{record_id}", "1")
            .replace("{domain}", "a.test")
            .replace("{row_id}", "1")
        )
        for method in HTTP_METHODS:
            if method in documented:
                continue
            response = client.request(method, path)
            assert response.status_code == 405, (method, path)
            assert allowed(response.headers["allow"]) == documented, (method, path)


def test_head_is_refused_like_any_other_method(client: TestClient) -> None:
    response = client.head(f"{GA}/routing_rules")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


def test_supported_methods_still_reach_their_routes(client: TestClient) -> None:
    assert client.get(f"{GA}/virtual_mtas/default").status_code == 200
    failed(client.put(f"{GA}/virtual_mtas/default", json={}), 400, "invalid_request")
    failed(client.delete(f"{GA}/relay_servers/1"), 404, "not_found")
    failed(client.post(f"{GA}/throttling_templates", json={}), 400, "invalid_request")


def test_405_still_needs_credentials(anonymous: TestClient) -> None:
    response = anonymous.patch(f"{GA}/relay_servers")
    failed(response, 401, "unauthorized")
    assert "allow" not in response.headers
