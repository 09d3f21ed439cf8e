"""The OpenAPI document: valid 3.1, and in step with the routes and the behaviour it describes."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from inbox.openapi import OPERATIONS
from tests.inbox.conftest import PREFIX, Api, MakeTicket


async def _document(api: Api) -> dict[str, Any]:
    response = await api.client.get(f"{PREFIX}/openapi.json")
    assert response.status == 200
    document: dict[str, Any] = await response.json()
    return document


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node))
    return set()


async def test_document_is_valid_openapi_and_needs_no_token(api: Api) -> None:
    document = await _document(api)
    validate(document)
    assert document["openapi"].startswith("3.1")
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    for ref in _refs(document):
        name = ref.removeprefix("#/components/schemas/")
        assert name in document["components"]["schemas"], ref


async def test_every_route_is_documented_and_every_documented_path_is_routed(api: Api) -> None:
    routed = {
        # Mounting prefixes the sub-app's resources, so strip it to compare with the document.
        (route.method, route.resource.canonical.removeprefix(PREFIX), route.name)
        for route in api.sub_app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    document = await _document(api)
    documented = {
        (method.upper(), path, operation["operationId"])
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }
    assert routed == documented
    assert len(routed) == len(OPERATIONS)


async def test_documented_security_matches_behaviour(api: Api, make_ticket: MakeTicket) -> None:
    """Every operation that declares the bearer scheme answers 401 without a token, and so on."""
    ticket = await make_ticket()
    document = await _document(api)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            url = PREFIX + path.replace("{reference}", ticket.reference).replace("{id}", "1")
            response = await api.client.request(method.upper(), url, json={})
            public = operation.get("security") == []
            if public:
                assert response.status == 200, path
            else:
                assert response.status == 401, (method, path)
                assert "401" in operation["responses"]


async def test_request_schemas_are_what_the_api_enforces(api: Api, make_ticket: MakeTicket) -> None:
    document = await _document(api)
    schemas = document["components"]["schemas"]
    reply = schemas["ReplyRequest"]
    assert reply["required"] == ["text"]
    assert reply["properties"]["text"]["minLength"] == 1
    assert reply["additionalProperties"] is False
    assert reply["properties"]["attachments"]["maxItems"] == 10
    attachment = schemas["ReplyAttachment"]
    assert attachment["required"] == ["filename", "content_type", "content_base64"]
    assert attachment["properties"]["content_base64"]["contentEncoding"] == "base64"
    assert attachment["additionalProperties"] is False
    assert set(schemas["TicketStatus"]["enum"]) == {"new", "open", "pending", "resolved", "closed"}
    assert schemas["TransferRequest"]["required"] == ["department", "reason"]

    ticket = await make_ticket()
    status, _ = await api.post(f"/tickets/{ticket.reference}/replies", {"text": "x", "cc": "y"})
    assert status == 422
    status, _ = await api.post(f"/tickets/{ticket.reference}/transfer", {"department": "technical"})
    assert status == 422


async def test_status_rules_are_documented(api: Api) -> None:
    document = await _document(api)
    description = document["paths"]["/tickets/{reference}/status"]["post"]["description"]
    assert "- closed: open" in description
    assert "resolved_at" in description
