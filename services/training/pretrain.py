"""Label-free pretraining of the FogNet encoder on the pool (a representation before labels).

The encoder is FogNet's ``features`` + ``embed`` layers, the part that makes the 32-d
embedding. :func:`pretrain` fits it with contrastive self-supervision (SimCLR's NT-Xent
loss): two random augmentations of each pool image are pulled together and pushed away
from every other image of the batch, through a small projection head that is thrown away
afterwards. Augmentations are batched torch ops (random resized crop, small rotation,
optional horizontal flip, brightness/contrast, noise, cutout), so nothing but torch is
needed and it runs on the CPU.

Result: encoder bytes (a ``torch.save`` dict of tensors and ints, loaded with
``weights_only=True``, never arbitrary pickles). Use them to

* embed images before any label exists: :func:`embed` -> (N, 32) float32 (the map, the
  diversity strategies, k-NN look-alikes);
* start the classifier from them: ``trainer.train(..., init=encoder_bytes)``, fine-tuning
  everything or freezing the encoder (``freeze=``).

Pure: arrays in, bytes out; deterministic for a seed when ``steps`` is given. With only a
time budget the step count is estimated from the step times so far (re-estimated each
step, so the learning-rate schedule still completes) and depends on the machine's speed;
the budget is a hard limit.

Cost and value on Fashion-MNIST (60k 28x28 pool; tests/benchmarks/bench_representation.py):
a step of 256 pairs takes ~0.65 s of one core (146 steps in a 90 s budget on 2 busy
cores). 1000 steps give an embedding with 10-NN accuracy 0.81 (random weights: 0.75) that
lifts a 20-label cold start picked by TypiClust on it from 0.44 (random picks) to 0.62;
fine-tuning the classifier from it changes accuracy at 50-500 labels by < 0.01.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fogmap.scoring.model import EMBED_DIM, FogNet, channels_last, for_inference, to_tensor

Progress = Callable[[int, int], None]

FORMAT = "fogmap-encoder/1"
ENCODER_PREFIXES = ("features.", "embed.")
CALIBRATION_STEPS = 4  # steps timed before a time budget is turned into a step count


# --- augmentations ----------------------------------------------------------------------

def augment(x: torch.Tensor, gen: torch.Generator, flip: bool = True,
            min_scale: float = 0.6, max_rotation: float = 15.0) -> torch.Tensor:
    """One random view of each image: (N, C, H, W) float in [0, 1] -> same shape.

    Geometry in one resampling (random resized crop of side ``min_scale``..1 of the
    image, aspect 3/4..4/3, rotation up to ``max_rotation`` degrees, horizontal flip with
    p = 1/2 when ``flip``), then brightness/contrast jitter (p = 0.8), Gaussian noise and a
    cutout square (p = 1/2). Every image of the batch gets its own draw. Random numbers
    come from ``gen`` on the CPU, so a seed gives the same views on any device.
    """
    n, c, h, w = x.shape
    dev = x.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    scale = uniform(min_scale, 1.0)
    aspect = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
    sx, sy = (scale * aspect.sqrt()).clamp(max=1.0), (scale / aspect.sqrt()).clamp(max=1.0)
    angle = uniform(-max_rotation, max_rotation) * math.pi / 180
    tx, ty = uniform(-1, 1) * (1 - sx), uniform(-1, 1) * (1 - sy)
    mirror = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if flip else (
        torch.ones(n))
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([sx * cos * mirror, -sy * sin, tx], dim=1),
        torch.stack([sx * sin * mirror, sy * cos, ty], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta.to(dev), [n, c, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    jitter = (torch.rand(n, generator=gen) < 0.8).float()
    contrast = (1 + jitter * uniform(-0.4, 0.4)).view(n, 1, 1, 1).to(dev)
    brightness = (jitter * uniform(-0.2, 0.2)).view(n, 1, 1, 1).to(dev)
    sigma = uniform(0.0, 0.08).view(n, 1, 1, 1)
    noise = (torch.randn((n, c, h, w), generator=gen) * sigma).to(dev)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness + noise

    half = max(1, h // 3) // 2
    cy = torch.randint(0, h, (n, 1, 1), generator=gen)
    cx = torch.randint(0, w, (n, 1, 1), generator=gen)
    hole = ((torch.arange(h).view(1, h, 1) - cy).abs() <= half) & (
        (torch.arange(w).view(1, 1, w) - cx).abs() <= half)
    hole = hole & (torch.rand(n, generator=gen) < 0.5).view(n, 1, 1)
    x = x.masked_fill(hole.unsqueeze(1).to(dev), 0.0)
    return x.clamp(0.0, 1.0)


# --- the objective ----------------------------------------------------------------------

class Projector(nn.Module):
    """SimCLR's projection head on the 32-d embedding; discarded after pretraining."""

    def __init__(self, dim_in: int = EMBED_DIM, hidden: int = 128, dim_out: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalized-temperature cross entropy: (N, D), (N, D) -> scalar.

    Each view must pick its partner among the other 2N - 1 views by cosine similarity.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def _lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# --- pretraining ------------------------------------------------------------------------

def pretrain(images: np.ndarray, classes_hint: int | None = None,
             seconds_budget: float = 180.0, seed: int = 0, progress: Progress | None = None,
             *, steps: int | None = None, max_steps: int | None = None,
             batch_size: int = 256, learning_rate: float = 2e-3,
             weight_decay: float = 1e-4, temperature: float = 0.2, flip: bool = True,
             width: int = 32, device: str = "cpu") -> bytes:
    """Fit FogNet's encoder to (N, H, W, C) uint8 pool images without labels.

    Runs ``steps`` optimizer steps of ``batch_size`` image pairs when given (deterministic
    for a seed on one machine), else as many as fit ``seconds_budget`` (never more; the
    count is re-estimated from the step times as it goes) and at most ``max_steps``.
    ``classes_hint`` is recorded in the result only (NT-Xent needs no class count).
    ``flip`` allows horizontal flips as an invariance (turn it off for data where a mirror
    image means something else, such as text). Returns encoder bytes for :func:`embed`,
    :func:`load_encoder` and ``trainer.train(init=...)``.
    """
    if images.ndim != 4 or len(images) < 2:
        raise ValueError(f"need (N >= 2, H, W, C) images, got shape {images.shape}")
    started = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    pool = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # uint8, NCHW
    model = FogNet(images.shape[-1], classes=1, width=width).to(device)
    projector = Projector().to(device)
    params = list(model.features.parameters()) + list(model.embed.parameters()) + list(
        projector.parameters())
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    batch = min(batch_size, len(pool))
    total = steps if steps is not None else 10**9
    warmup = max(1, min(50, total // 10)) if steps is not None else 50
    model.train()
    projector.train()
    step, calibrated_at = 0, 0.0
    losses: list[float] = []
    while step < total:
        if steps is None and step == 1:
            calibrated_at = time.perf_counter()  # step 0 pays one-off start-up costs
        if steps is None and step > CALIBRATION_STEPS:
            # Re-estimated every step from the mean step time so far: the schedule still
            # ends at the budget when the machine gets busier or quieter on the way.
            now = time.perf_counter()
            left = seconds_budget - (now - started)
            if left <= 0:
                break
            per_step = (now - calibrated_at) / (step - 1)
            fits = min(step + max(1, int(left / per_step)), max_steps or 10**9)
            if total == 10**9:
                warmup = max(1, min(50, fits // 10))
            total = fits
        idx = torch.randint(0, len(pool), (batch,), generator=gen)
        x = (pool[idx].to(device).float() / 255.0)
        views = torch.cat([augment(x, gen, flip), augment(x, gen, flip)])
        for group in opt.param_groups:
            group["lr"] = learning_rate * _lr_factor(step, total, warmup)
        z = projector(model.embedding(views))
        loss = nt_xent(z[:batch], z[batch:], temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if progress and (step % 25 == 0 or step == total):
            progress(step, total)
    if progress and step != total:
        progress(step, step)
    model.eval()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()
             if k.startswith(ENCODER_PREFIXES)}
    blob = {"format": FORMAT, "state": state, "channels": int(images.shape[-1]),
            "width": int(width), "classes_hint": int(classes_hint or 0), "steps": int(step),
            "seed": int(seed), "images": int(len(pool)), "batch_size": int(batch),
            "seconds": float(time.perf_counter() - started),
            "final_loss": float(np.mean(losses[-20:])) if losses else float("nan")}
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


# --- using the result -------------------------------------------------------------------

def load_encoder(raw: bytes) -> dict:
    """Encoder bytes -> their dict (``state``, ``channels``, ``width``, ``steps``, ...)."""
    blob = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError("not fogmap encoder weights")
    return blob


def apply_encoder(model: FogNet, raw: bytes) -> FogNet:
    """Copy pretrained encoder weights (features + embed) into ``model``, in place."""
    blob = load_encoder(raw)
    if int(blob["channels"]) != model.channels or int(blob["width"]) != model.width:
        raise ValueError(f"encoder is for {blob['channels']} channels, width {blob['width']}; "
                         f"model has {model.channels}, {model.width}")
    missing, unexpected = model.load_state_dict(blob["state"], strict=False)
    if unexpected or any(k.startswith(ENCODER_PREFIXES) for k in missing):
        raise ValueError(f"encoder weights do not fit FogNet: {missing}, {unexpected}")
    return model


def encoder_model(raw: bytes) -> FogNet:
    """A FogNet (eval mode) whose encoder is the pretrained one; its head is untrained."""
    blob = load_encoder(raw)
    model = FogNet(int(blob["channels"]), classes=1, width=int(blob["width"]))
    apply_encoder(model, raw)
    return model.eval()


@torch.no_grad()
def embed(images: np.ndarray, encoder: bytes | FogNet, batch: int = 512) -> np.ndarray:
    """The label-free embedding: (N, H, W, C) uint8 -> (N, 32) float32.

    ``encoder`` is :func:`pretrain` bytes, or any FogNet (a trained classifier too).
    """
    model = encoder_model(bytes(encoder)) if isinstance(encoder, bytes | bytearray) else encoder
    device = next(model.parameters()).device  # a model on a GPU embeds there
    model = for_inference(model)
    out = [model.embedding(channels_last(to_tensor(images[lo:lo + batch]).to(device)))
           .cpu().numpy() for lo in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros((0, EMBED_DIM), np.float32)
