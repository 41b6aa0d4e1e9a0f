"""Where artifacts live between the trainer and their readers.

Model weights (``model:<version>``) go to the scorers; per-item vectors of a label-free
representation (``representation:<version>``: item ids and a float32 matrix, an ``.npz``)
go to the selection and vector services. Events carry the URI, never the arrays.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np


class ModelRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def save(self, version: str, weights: bytes) -> str:
        self._write(self.root / f"{version}.pt", weights)
        return f"model:{version}"

    def load(self, uri: str) -> bytes:
        return self._path(uri, "model:", ".pt").read_bytes()

    def save_vectors(self, version: str, ids: list[str], vectors: np.ndarray) -> str:
        """Store (N,) item ids and their (N, R) vectors; returns the URI to load them by."""
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        buf = io.BytesIO()
        np.savez(buf, ids=np.array(ids, dtype=str), vectors=vectors.astype(np.float32))
        self._write(self.root / f"{version}.npz", buf.getvalue())
        return f"representation:{version}"

    def load_vectors(self, uri: str) -> tuple[list[str], np.ndarray]:
        """(N,) item ids and (N, R) float32 vectors of a ``representation:`` URI."""
        with np.load(self._path(uri, "representation:", ".npz"), allow_pickle=False) as f:
            return f["ids"].tolist(), f["vectors"].astype(np.float32)

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: a reader never sees half a file

    def _path(self, uri: str, scheme: str, suffix: str) -> Path:
        if not uri.startswith(scheme):
            raise ValueError(f"not a {scheme.rstrip(':')} URI: {uri!r}")
        name = uri.removeprefix(scheme)
        if len(name) < 2 or name[0] not in "vr" or not name[1:].isdigit():
            raise ValueError(f"bad version in {uri!r}")
        return self.root / f"{name}{suffix}"
