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
import yaml

from fogmap.core.events import EVENT_TYPES, TOPICS, dataschema

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


def render_asyncapi() -> dict[str, Any]:
    """AsyncAPI 3.0: the Kafka topics (channels) and which events travel on each."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for topic in sorted(TOPICS):
        messages = {}
        for name in sorted(TOPICS[topic]):
            messages[name.replace(".", "_")] = {
                "name": f"fogmap.{name}",
                "title": f"fogmap.{name}",
                "summary": EVENT_TYPES[name].description,
                "contentType": "application/cloudevents+json",
                "payload": {"$ref": f"./events/{schema_filename(name)}"},
                "bindings": {"kafka": {"key": {"type": "string",
                                               "description": "CloudEvents subject"}}},
            }
        key = topic.replace(".", "_")
        channels[key] = {"address": topic, "messages": messages,
                         "description": f"Kafka topic {topic}, keyed by the event subject "
                                        "(the item id), so one item's events stay in order."}
        operations[f"consume_{key}"] = {"action": "receive",
                                        "channel": {"$ref": f"#/channels/{key}"}}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "fogmap events", "version": "1.0.0",
                 "description": "Label, prediction and model events of fogmap, as CloudEvents "
                                "1.0 (structured mode). Every event names its schema and "
                                "version in `dataschema`; schema changes are backward "
                                "compatible or get a new version."},
        "defaultContentType": "application/cloudevents+json",
        "servers": {"kafka": {"host": "kafka:9092", "protocol": "kafka",
                              "description": "docker-compose.yml's broker (KRaft)"}},
        "channels": channels,
        "operations": operations,
    }


def export(directory: Path) -> list[Path]:
    """Write every event schema and ``asyncapi.yaml`` (one level above ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sorted(EVENT_TYPES):
        path = directory / schema_filename(name)
        path.write_text(json.dumps(render_schema(name), indent=2, sort_keys=True) + "\n")
        written.append(path)
    api = directory.parent / "asyncapi.yaml"
    api.write_text(yaml.safe_dump(render_asyncapi(), sort_keys=False, width=100))
    written.append(api)
    return written


@cache
def published_schema(name: str) -> dict[str, Any]:
    """The schema file shipped in the ``fogmap.schemas`` package."""
    text = resources.files("fogmap.schemas").joinpath("events", schema_filename(name))
    return json.loads(text.read_text())


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        published_schema(name), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def validate_wire(event: dict[str, Any]) -> None:
    """Validate a JSON-decoded event against its published schema (raises on mismatch)."""
    name = str(event.get("type", "")).removeprefix("fogmap.")
    if name not in EVENT_TYPES:
        raise jsonschema.ValidationError(f"unknown event type {event.get('type')!r}")
    error = jsonschema.exceptions.best_match(_validator(name).iter_errors(event))
    if error is not None:
        raise error
