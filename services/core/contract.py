"""The wire contract on disk: one JSON Schema (draft 2020-12) per event type.

``render_schema`` derives the schema a pydantic model implies; ``schemas/events/*.json``
are the published files. ``fogmap schemas export`` rewrites them; the contract test fails
when a model changes and the files do not (or the other way round).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from fogmap.core.events import EVENT_TYPES, dataschema

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def schema_filename(name: str) -> str:
    return f"{name}.v{EVENT_TYPES[name].version}.json"


def render_schema(name: str) -> dict[str, Any]:
    """The CloudEvents envelope schema with this event's payload under ``data``."""
    cls = EVENT_TYPES[name]
    data = cls.model_json_schema(mode="serialization")
    defs = data.pop("$defs", {})
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "$id": dataschema(name),
        "title": f"fogmap.{name}",
        "description": cls.description,
        "type": "object",
        "additionalProperties": False,
        "required": ["specversion", "id", "source", "type", "time", "subject",
                     "dataschema", "data"],
        "properties": {
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1, "maxLength": 64},
            "source": {"type": "string", "minLength": 1, "maxLength": 128},
            "type": {"const": f"fogmap.{name}"},
            "time": {"type": "string", "format": "date-time"},
            "subject": {"type": "string", "minLength": 1, "maxLength": 160},
            "dataschema": {"const": dataschema(name)},
            "datacontenttype": {"const": "application/json"},
            "data": data,
        },
    }
    if defs:
        schema["$defs"] = defs
    return schema


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(EVENT_TYPES):
        path = directory / schema_filename(name)
        path.write_text(json.dumps(render_schema(name), indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


@cache
def published_schema(name: str) -> dict[str, Any]:
    """The schema file shipped in the ``fogmap.schemas`` package."""
    text = resources.files("fogmap.schemas").joinpath("events", schema_filename(name))
    return json.loads(text.read_text())


def validate_wire(event: dict[str, Any]) -> None:
    """Validate a JSON-decoded event against its published schema (raises on mismatch)."""
    name = str(event.get("type", "")).removeprefix("fogmap.")
    if name not in EVENT_TYPES:
        raise jsonschema.ValidationError(f"unknown event type {event.get('type')!r}")
    jsonschema.validate(event, published_schema(name),
                        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
