"""The GreenArrow family as a whole: how the OpenAPI document names its operations."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.api.helpers import GA, failed


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
