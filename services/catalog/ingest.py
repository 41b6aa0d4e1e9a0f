"""Ingest: put a data set's pixels in the image store and announce every image.

Idempotent: event ids are derived from the item ids, and a data set already in the
store is not appended again, so running it twice (or after a crash) changes nothing.
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from fogmap.bus.port import Bus
from fogmap.catalog.datasets import Dataset
from fogmap.catalog.imagestore import ImageStore, uri
from fogmap.core.events import DatasetRegistered, ImageIngested, wrap

SOURCE = "/fogmap/ingest"
CHUNK = 5000


def item_id(dataset: str, index: int) -> str:
    return f"{dataset}-{index:06d}"


async def ingest(bus: Bus, store: ImageStore, ds: Dataset, progress: bool = True) -> int:
    """Store and announce ``ds``; returns the number of images announced."""
    if store.count(ds.name) == 0:
        store.append(ds.name, ds.images)
    elif store.count(ds.name) != len(ds.images):
        raise ValueError(f"data set {ds.name!r} is in the store with a different size")
    h, w, c = ds.images.shape[1:]
    bar = tqdm(total=len(ds.images), desc=f"ingest {ds.name}", unit="img",
               disable=not progress, leave=False)
    for lo in range(0, len(ds.images), CHUNK):
        envs = []
        for i in range(lo, min(lo + CHUNK, len(ds.images))):
            test = bool(ds.is_test[i])
            label = int(ds.labels[i]) if test and ds.labels is not None else None
            data = ImageIngested(item_id=item_id(ds.name, i), dataset=ds.name,
                                 split="test" if test else "pool", uri=uri(ds.name, i),
                                 height=h, width=w, channels=c, label=label)
            envs.append(wrap(data, SOURCE, f"ingest:{data.item_id}"))
        await bus.publish(envs)
        bar.update(len(envs))
    bar.close()
    held_out = int(np.sum(ds.is_test))
    registered = DatasetRegistered(dataset=ds.name, classes=ds.classes, image_shape=(h, w, c),
                                   pool_size=len(ds.images) - held_out, test_size=held_out)
    await bus.publish([wrap(registered, SOURCE, f"dataset:{ds.name}:{len(ds.images)}")])
    return len(ds.images)
