"""Where model weights live between the trainer and the scorers (``model:<version>``)."""

from __future__ import annotations

import os
from pathlib import Path


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def save(self, version: str, weights: bytes) -> str:
        path = self.root / f"{version}.pt"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(weights)
        os.replace(tmp, path)  # atomic: a reader never sees half a file
        return f"model:{version}"

    def load(self, uri: str) -> bytes:
        if not uri.startswith("model:"):
            raise ValueError(f"not a model URI: {uri!r}")
        name = uri.removeprefix("model:")
        if not name.replace("v", "", 1).isdigit():
            raise ValueError(f"bad model version in {uri!r}")
        return (self.root / f"{name}.pt").read_bytes()
