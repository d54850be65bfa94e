"""The JSON Schema of the spec language, in draft-07 (what yaml-language-server and PyCharm read).

Pydantic emits draft 2020-12; three rewrites make it draft-07: ``$defs`` → ``definitions``,
``prefixItems`` (tuples) → an ``items`` array with ``additionalItems: false``, and
the top-level ``$schema`` keyword. The committed copy is ``schema/specnet.schema.json``; a test
keeps it equal to :func:`json_schema`.
"""

from __future__ import annotations

import json
from typing import Any

from specnet.spec import Spec

__all__ = ["DRAFT_07", "json_schema", "json_schema_text"]

DRAFT_07 = "http://json-schema.org/draft-07/schema#"


def _to_draft_07(node: Any) -> Any:
    if isinstance(node, list):
        return [_to_draft_07(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_draft_07(value) for key, value in node.items()}
    if "prefixItems" in out:
        out["items"] = out.pop("prefixItems")
        out["additionalItems"] = False
        out.pop("minItems", None)
        out.pop("maxItems", None)
        out["minItems"] = out["maxItems"] = len(out["items"])
    if isinstance(out.get("$ref"), str):
        out["$ref"] = out["$ref"].replace("#/$defs/", "#/definitions/")
    out.pop("discriminator", None)  # an OpenAPI keyword; draft-07 validates with oneOf alone
    return out


def json_schema() -> dict[str, Any]:
    """The draft-07 JSON Schema every spec file validates against."""
    raw = Spec.model_json_schema(by_alias=True, mode="validation")
    body = _to_draft_07(raw)
    definitions = body.pop("$defs", {})
    schema: dict[str, Any] = {
        "$schema": DRAFT_07,
        "$id": "https://specnet.dev/schema/specnet.schema.json",
        **body,
    }
    # blocks are expanded before validation (specnet/blocks.py): described loosely, since a
    # body's `$filters` is no integer, and a use is any layer-like mapping with `block:`
    properties = schema["properties"]
    properties["blocks"] = {
        "title": "Blocks",
        "description": "Named, parametrised lists of layers, used in `layers` as "
        "{block: NAME, name: USE, PARAM: VALUE}; each expands to <use>_<layer> names.",
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "params": {"type": "array", "items": {"type": "string"}},
                "layers": {"type": "array", "minItems": 1, "items": {"type": "object"}},
                "description": {"type": "string"},
            },
            "required": ["layers"],
            "additionalProperties": False,
        },
    }
    layers = properties["layers"]["items"]
    use = {
        "type": "object",
        "properties": {"block": {"type": "string"}, "name": {"type": "string"}},
        "required": ["block", "name"],
    }
    properties["layers"]["items"] = {"anyOf": [layers, use]}
    schema["title"] = "specnet spec"
    schema["description"] = "A neural-network spec for specnet (see README: The spec language)."
    schema["definitions"] = definitions
    return schema


def json_schema_text() -> str:
    """The schema as stable, pretty JSON text (what ``specnet schema`` prints)."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
