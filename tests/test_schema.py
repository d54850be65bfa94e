"""The JSON Schema: draft-07, committed copy fresh, and in agreement with the loader."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from specnet._yaml import load_yaml
from specnet.schema import json_schema, json_schema_text
from tests.conftest import ALL_SPECS, BAD_SPECS, ROOT

COMMITTED = ROOT / "schema" / "specnet.schema.json"


def test_schema_is_valid_draft_07() -> None:
    schema = json_schema()
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    assert "$defs" not in json.dumps(schema)
    assert "prefixItems" not in json.dumps(schema)


def test_committed_copy_is_fresh() -> None:
    assert COMMITTED.read_text() == json_schema_text(), (
        "schema/specnet.schema.json is stale: run `specnet schema -o schema/specnet.schema.json "
        "--force`"
    )


@pytest.mark.parametrize("path", ALL_SPECS, ids=lambda p: p.stem)
def test_specs_validate_against_schema_and_name_it(path: Path) -> None:
    validator = jsonschema.Draft7Validator(json_schema())
    data = load_yaml(path.read_bytes(), str(path)).data
    assert list(validator.iter_errors(data)) == []
    first, second = path.read_text().splitlines()[:2]
    assert first.startswith("# Run: specnet ")
    assert second.startswith("# yaml-language-server: $schema=")
    target = (path.parent / second.split("$schema=", 1)[1]).resolve()
    assert target == COMMITTED


FIELD_LEVEL = {
    "bad_activation",
    "bad_padding",
    "negative_units",
    "typo_key_filters",
    "typo_top_level_key",
    "unknown_layer_type",
    "wrong_type_units_string",
    "zero_filters",
    "kernel_size_triple",
    "missing_type",
}


@pytest.mark.parametrize("name", sorted(FIELD_LEVEL))
def test_schema_rejects_what_the_loader_rejects(name: str) -> None:
    """An editor flags field-level mistakes too (shape mistakes need specnet itself)."""
    path = next(p for p in BAD_SPECS if p.stem == name)
    data = load_yaml(path.read_bytes(), str(path)).data
    assert list(jsonschema.Draft7Validator(json_schema()).iter_errors(data))
