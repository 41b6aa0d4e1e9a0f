"""The classifier: a small CNN (written here; torchvision does not run beside our torch).

It maps (N, C, H, W) float images to class logits and a 32-d embedding. Dropout sits
between the embedding and the head, so MC-dropout (BALD, EIG) only repeats the head: one
convolutional pass per image, ``mc_samples`` cheap linear passes.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

EMBED_DIM = 32


class FogNet(nn.Module):
    def __init__(self, channels: int, classes: int, width: int = 32, dropout: float = 0.3):
        super().__init__()
        self.channels, self.classes, self.width = channels, classes, width
        # Pool early: at 28x28 this costs ~2M multiply-adds an image, a third of the same
        # net pooling later, with equal held-out accuracy at 500 Fashion-MNIST labels.
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )
        self.embed = nn.Sequential(nn.Linear(8 * width, EMBED_DIM), nn.ReLU())
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(EMBED_DIM, classes)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, EMBED_DIM)."""
        return self.embed(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> logits (N, classes)."""
        return self.head(self.dropout(self.embedding(x)))

    def dropout_masks(self, samples: int, seed: int) -> torch.Tensor:
        """K dropout masks (K, D), shared by every item of one scoring pass.

        Sharing them makes sample k one set of parameters for the whole pool, which is
        what joint quantities (EIG between two items) need.
        """
        gen = torch.Generator().manual_seed(seed)
        keep = 1.0 - self.dropout.p
        return torch.bernoulli(torch.full((samples, EMBED_DIM), keep), generator=gen) / keep

    def mc_head(self, emb: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """MC-dropout probabilities over the head: (N, D), (K, D) -> (K, N, classes)."""
        return torch.softmax(self.head(emb.unsqueeze(0) * masks.unsqueeze(1)), dim=-1)


def for_inference(model: FogNet) -> FogNet:
    """An eval-mode copy for scoring: each conv + batch-norm pair fused into one conv, and
    NHWC (channels-last) layout. Same outputs to ~1e-7; scoring 60k Fashion-MNIST images
    on 2 CPU cores went from 18.6 s to ~7 s. Feed it :func:`channels_last` inputs."""
    fast = copy.deepcopy(model).eval()
    layers, fused = list(fast.features), []
    while layers:
        layer = layers.pop(0)
        norm = layers[0] if layers else None
        if isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
            layer = fuse_conv_bn_eval(layer, norm)
            layers.pop(0)
        fused.append(layer)
    fast.features = nn.Sequential(*fused)
    return fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in NHWC memory order: oneDNN's fast layout for these small convs."""
    return x.contiguous(memory_format=torch.channels_last)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0


def save_weights(model: FogNet) -> bytes:
    buf = io.BytesIO()
    torch.save({"state": model.state_dict(), "channels": model.channels,
                "classes": model.classes, "width": model.width}, buf)
    return buf.getvalue()


def load_weights(raw: bytes) -> FogNet:
    """Rebuild a model from :func:`save_weights` bytes; never unpickles arbitrary objects."""
    blob = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    model = FogNet(int(blob["channels"]), int(blob["classes"]), int(blob["width"]))
    model.load_state_dict(blob["state"])
    model.eval()
    return model
