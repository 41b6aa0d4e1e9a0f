"""The wire contract: published JSON Schemas match the pydantic models, and validate."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from fogmap.core import contract
from fogmap.core.events import (
    EVENT_TYPES,
    TOPICS,
    Envelope,
    LabelSubmitted,
    PoolScored,
    parse,
    wrap,
)

SCHEMAS = Path(__file__).parents[2] / "schemas"


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_published_schema_matches_model(name: str) -> None:
    on_disk = json.loads((SCHEMAS / "events" / contract.schema_filename(name)).read_text())
    assert on_disk == json.loads(json.dumps(contract.render_schema(name))), (
        f"schemas/events/{contract.schema_filename(name)} drifted from the pydantic model; "
        "run `fogmap schemas export` and review the change (compatible, or a new version)")


def test_no_stray_schema_files() -> None:
    expected = {contract.schema_filename(n) for n in EVENT_TYPES}
    assert {p.name for p in (SCHEMAS / "events").glob("*.json")} == expected


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_schemas_are_valid_draft_2020_12(name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(contract.published_schema(name))


def test_asyncapi_names_every_topic_and_event() -> None:
    doc = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    assert doc == json.loads(json.dumps(contract.render_asyncapi()))
    listed = {ch["address"]: {m["name"] for m in ch["messages"].values()}
              for ch in doc["channels"].values()}
    assert listed == {t: {f"fogmap.{n}" for n in names} for t, names in TOPICS.items()}


def test_an_envelope_validates_against_its_schema() -> None:
    env = wrap(LabelSubmitted(label_id="l1", item_id="digits-000001", task_id="t1", label=3,
                              class_name="3", annotator="ann", role="annotator",
                              shown_model_version="v0002"), "/test")
    wire = json.loads(env.model_dump_json())
    contract.validate_wire(wire)
    assert wire["subject"] == "digits-000001"
    assert wire["dataschema"] == "urn:fogmap:schema:label.submitted:v1"
    assert parse(env.model_dump_json()) == env


@pytest.mark.parametrize("mutate", [
    lambda e: e.pop("id"),
    lambda e: e.update(type="fogmap.label.bogus"),
    lambda e: e.update(dataschema="urn:fogmap:schema:label.submitted:v9"),
    lambda e: e["data"].update(label=-1),
    lambda e: e["data"].update(extra_field=1),
    lambda e: e["data"].pop("annotator"),
    lambda e: e.update(specversion="0.3"),
])
def test_malformed_events_are_refused_by_both(mutate) -> None:  # type: ignore[no-untyped-def]
    env = wrap(LabelSubmitted(label_id="l1", item_id="x-1", task_id=None, label=1,
                              class_name="1", annotator="a", role="annotator",
                              shown_model_version=None), "/test")
    wire = json.loads(env.model_dump_json())
    mutate(wire)
    with pytest.raises(jsonschema.ValidationError):
        contract.validate_wire(wire)
    with pytest.raises((ValidationError, ValueError)):
        parse(json.dumps(wire))


def test_group_events_use_their_own_subject() -> None:
    env = wrap(PoolScored(model_version="v0003", items=10, seconds=1.0), "/t")
    assert env.subject == "model:v0003"
    assert Envelope.model_validate_json(env.model_dump_json()).payload() == env.payload()


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_every_event_has_a_subject(name: str) -> None:
    """Every published event type is about its item (``item_id``) or names its own
    subject."""
    cls = EVENT_TYPES[name]
    assert "item_id" in cls.model_fields or "subject" in vars(cls)


def test_an_event_without_an_item_must_name_its_subject() -> None:
    from fogmap.core.events import EventData

    with pytest.raises(TypeError, match="Orphan has no item_id"):
        class Orphan(EventData):
            name = "test.orphan"
            topic = "fogmap.test"
