"""Where image pixels live: fixed-size records appended to one file per data set.

It plays the role object storage plays in the distributed deployment: the ingest step
writes, every service reads by URI (``img:<dataset>/<index>``). Reads of whole batches go
through a memory map, so scoring 60k images reads no more than it needs.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _paths(self, dataset: str) -> tuple[Path, Path]:
        return self.root / f"{dataset}.u8", self.root / f"{dataset}.json"

    def shape(self, dataset: str) -> tuple[int, int, int] | None:
        meta = self._paths(dataset)[1]
        return tuple(json.loads(meta.read_text())["shape"]) if meta.exists() else None

    def count(self, dataset: str) -> int:
        data, _ = self._paths(dataset)
        shape = self.shape(dataset)
        return data.stat().st_size // int(np.prod(shape)) if shape and data.exists() else 0

    def append(self, dataset: str, images: np.ndarray) -> list[str]:
        """Append (N, H, W, C) uint8 images; return their URIs."""
        data, meta = self._paths(dataset)
        with self._lock:
            shape: tuple[int, ...] | None = self.shape(dataset)
            if shape is None:
                shape = tuple(int(s) for s in images.shape[1:])
                meta.write_text(json.dumps({"shape": shape}))
            if tuple(images.shape[1:]) != shape:
                raise ValueError(f"image shape {images.shape[1:]} != data set shape {shape}")
            start = self.count(dataset)
            with data.open("ab") as fh:
                fh.write(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
        return [uri(dataset, start + i) for i in range(len(images))]

    def get_many(self, uris: list[str]) -> np.ndarray:
        """Images for URIs of one data set, in order: (N, H, W, C) uint8."""
        if not uris:
            return np.zeros((0, 1, 1, 1), dtype=np.uint8)
        dataset = parse_uri(uris[0])[0]
        index = np.array([parse_uri(u)[1] for u in uris])
        shape = self.shape(dataset)
        if shape is None:
            raise KeyError(dataset)
        data = np.memmap(self._paths(dataset)[0], dtype=np.uint8, mode="r")
        return np.asarray(data.reshape(-1, *shape)[index])

    def get(self, image_uri: str) -> np.ndarray:
        return self.get_many([image_uri])[0]


def uri(dataset: str, index: int) -> str:
    return f"img:{dataset}/{index}"


def parse_uri(value: str) -> tuple[str, int]:
    if not value.startswith("img:") or "/" not in value:
        raise ValueError(f"not an image URI: {value!r}")
    dataset, _, index = value[4:].rpartition("/")
    return dataset, int(index)
