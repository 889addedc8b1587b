"""The SDK's TypedDicts against the running server's `/openapi.json`: any field added,
removed or renamed on one side fails here, so the event model cannot drift silently."""

from __future__ import annotations

import typing
from typing import Any

import httpx
import pytest

import bitacora
from conftest import Server

# SDK type -> the server's schema name.
MODELS: dict[str, Any] = {
    "EventInput": bitacora.EventInput,
    "Event": bitacora.Event,
    "Actor": bitacora.Actor,
    "Target": bitacora.Target,
    "Change": bitacora.Change,
    "Context": bitacora.Context,
}


@pytest.fixture(scope="module")
def schemas(server: Server) -> dict[str, Any]:
    document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    found: dict[str, Any] = document["components"]["schemas"]
    return found


def _resolve(schemas: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = schemas[node["$ref"].rsplit("/", 1)[1]]
    return node


def _enum(schemas: dict[str, Any], node: Any) -> set[str] | None:
    """The string values a property allows, looking through refs and nullable unions."""
    node = _resolve(schemas, node)
    if not isinstance(node, dict):
        return None
    if "enum" in node:
        return {v for v in node["enum"] if v is not None}
    for key in ("oneOf", "anyOf", "allOf"):
        for option in node.get(key, []):
            values = _enum(schemas, option)
            if values:
                return values
    return None


def _literal_values(tp: Any) -> set[str] | None:
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Literal:
        return set(args)
    return None


@pytest.mark.parametrize("name", sorted(MODELS))
def test_typed_dicts_match_the_servers_schema(schemas: dict[str, Any], name: str) -> None:
    assert name in schemas, f"the server has no {name} schema any more"
    schema = _resolve(schemas, schemas[name])
    model = MODELS[name]
    server_fields = set(schema.get("properties", {}))
    sdk_fields = set(model.__required_keys__) | set(model.__optional_keys__)
    assert sdk_fields == server_fields, (
        f"{name}: only in the SDK {sorted(sdk_fields - server_fields)}, "
        f"only on the server {sorted(server_fields - sdk_fields)}"
    )
    # What the server requires, the SDK must not call optional (for what it receives) and
    # for what it sends, `action` alone is required.
    required = set(schema.get("required", []))
    if name == "EventInput":
        assert required == {"action"}
    elif name == "Event":
        assert required <= set(model.__required_keys__) | {"changes", "metadata"}
    hints = typing.get_type_hints(model)
    for field, prop in schema["properties"].items():
        allowed = _enum(schemas, prop)
        literal = _literal_values(hints[field])
        if allowed is not None or literal is not None:
            assert literal == allowed, f"{name}.{field}: SDK {literal} != server {allowed}"


def test_ack_schema_matches(schemas: dict[str, Any]) -> None:
    # The Ack dataclass fields.
    ack = next(_resolve(schemas, s) for n, s in schemas.items() if n == "Ack")
    assert set(ack["properties"]) == set(bitacora.Ack.__dataclass_fields__)
