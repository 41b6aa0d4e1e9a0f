"""Data sets fogmap can ingest: ``digits``, a ``.npz`` file, or a folder of images.

Every loader returns the same :class:`Dataset`: uint8 images (N, H, W, C), optional
labels, an ``is_test`` mask (held-out images are never selected or trained on; a seeded,
stratified 20% when the source has none) and the class names.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                   "Shirt", "Sneaker", "Bag", "Ankle boot"]


class DatasetError(ValueError):
    """The data set is missing or malformed; the message says what to fix."""


@dataclass(frozen=True)
class Dataset:
    name: str
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray | None  # (N,) int64, or None for an unlabeled pool
    is_test: np.ndarray  # (N,) bool
    classes: list[str]

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise DatasetError("images must be uint8 (N, H, W, C)")
        if self.labels is not None and len(self.labels) != n:
            raise DatasetError("labels and images differ in length")
        if len(self.is_test) != n:
            raise DatasetError("is_test and images differ in length")


def load(spec: str, seed: int = 0) -> Dataset:
    """Load ``digits``, ``path/to/file.npz`` or ``path/to/folder``."""
    if spec == "digits":
        return _digits(seed)
    path = Path(spec).expanduser()
    if path.suffix == ".npz" and path.is_file():
        return _npz(path, seed)
    if path.is_dir():
        return _folder(path, seed)
    raise DatasetError(f"no data set {spec!r}: expected 'digits', a .npz file or a folder")


def _digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(bunch.images * (255.0 / 16.0), 0, 255).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    return Dataset("digits", images, labels, _split(labels, len(labels), seed),
                   [str(i) for i in range(10)])


def _npz(path: Path, seed: int) -> Dataset:
    with np.load(path, allow_pickle=False) as data:
        if "images" not in data:
            raise DatasetError(f"{path}: no 'images' array")
        images = np.asarray(data["images"])
        labels = np.asarray(data["labels"]).astype(np.int64) if "labels" in data else None
        is_test = np.asarray(data["is_test"]).astype(bool) if "is_test" in data else None
        names = [str(c) for c in data["classes"]] if "classes" in data else None
    if images.dtype != np.uint8:
        raise DatasetError(f"{path}: images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DatasetError(f"{path}: images must be (N,H,W) or (N,H,W,C), got {images.shape}")
    if is_test is None:
        is_test = _split(labels, len(images), seed)
    n_classes = int(labels.max()) + 1 if labels is not None else 0
    if names is None:
        names = FASHION_CLASSES if "fashion" in path.name and n_classes == 10 else [
            str(i) for i in range(max(n_classes, 2))]
    return Dataset(path.stem, images, labels, is_test, names)


def _folder(path: Path, seed: int) -> Dataset:
    subdirs = sorted(p for p in path.iterdir() if p.is_dir())
    files: list[tuple[Path, int | None]] = []
    if subdirs:
        for index, sub in enumerate(subdirs):
            files += [(f, index) for f in sorted(sub.iterdir()) if f.suffix.lower() in
                      IMAGE_SUFFIXES]
        classes = [d.name for d in subdirs]
    else:
        files = [(f, None) for f in sorted(path.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
        classes = []
    if not files:
        raise DatasetError(f"{path}: no PNG/JPEG images found")
    first = decode_image(files[0][0].read_bytes())
    shape = first.shape
    images = np.stack([fit_image(decode_image(f.read_bytes()), shape) for f, _ in files])
    labels = np.array([y for _, y in files], dtype=np.int64) if subdirs else None
    if not classes:
        raise DatasetError(f"{path}: a flat folder needs class names (one sub-folder per class)")
    return Dataset(path.name, images, labels, _split(labels, len(images), seed), classes)


def _split(labels: np.ndarray | None, n: int, seed: int, fraction: float = 0.2) -> np.ndarray:
    """A seeded, stratified held-out split."""
    rng = np.random.default_rng(seed)
    is_test = np.zeros(n, dtype=bool)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c)
                                                    for c in np.unique(labels)]
    for idx in groups:
        chosen = rng.permutation(idx)[: int(round(len(idx) * fraction))]
        is_test[chosen] = True
    return is_test


def decode_image(raw: bytes, max_pixels: int = 4096 * 4096) -> np.ndarray:
    """Decode PNG/JPEG bytes to uint8 (H, W, C); raise DatasetError when not an image."""
    try:
        with Image.open(io.BytesIO(raw)) as img:
            if img.width * img.height > max_pixels:
                raise DatasetError(f"image too large: {img.width}x{img.height}")
            img.load()
            mode = "L" if img.mode in ("1", "L", "I", "I;16", "F", "LA") else "RGB"
            return np.asarray(img.convert(mode), dtype=np.uint8).reshape(
                img.height, img.width, 1 if mode == "L" else 3)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"not a decodable image: {exc}") from exc


def fit_image(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize / convert an image to the data set's (H, W, C)."""
    h, w, c = shape
    img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    img = img.convert("L" if c == 1 else "RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).reshape(h, w, c)


def encode_png(image: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes of a (H, W, C) uint8 image, re-encoded from pixels (never the upload)."""
    img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
