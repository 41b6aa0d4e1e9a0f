"""The compose file and deploy specs are consistent (no Docker engine here to run them)."""

from __future__ import annotations

from pathlib import Path

import yaml

from fogmap.core.events import TOPICS

ROOT = Path(__file__).parents[2]


def test_compose_file_is_well_formed() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"fogmap", "kafka", "qdrant", "triton", "postgres"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown {dep}"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(".") or source in doc["volumes"], (name, source)
    build = services["fogmap"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    # production settings refuse default secrets: the compose file must demand one
    assert "FOGMAP_ADMIN_TOKEN:?" in (ROOT / "docker-compose.yml").read_text()


def test_topic_specs_cover_every_channel() -> None:
    spec = yaml.safe_load((ROOT / "deploy" / "topics.yaml").read_text())
    assert {t["name"] for t in spec["topics"]} == set(TOPICS)
