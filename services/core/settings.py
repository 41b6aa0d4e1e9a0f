"""One typed settings object, built once per process and passed down.

Every knob reads from the environment with the prefix ``FOGMAP_`` (nested with ``__``,
e.g. ``FOGMAP_TRAINING__EVERY_N_LABELS=50``). Nothing else in the code base reads
``os.environ``.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainingSettings(BaseModel):
    every_n_labels: int = Field(20, ge=1, description="retrain after this many new labels")
    every_seconds: float = Field(120.0, ge=0, description="...or this long after a label (0: off)")
    min_labels: int = Field(10, ge=2, description="no model is trained on fewer labels")
    epochs: int = Field(60, ge=1)
    min_steps: int = Field(
        1200, ge=1, description="floor on optimizer steps: a small labeled set trains as "
        "long as a large one (at 300, sets of a few hundred labels were undertrained)")
    max_steps: int = Field(1500, ge=1, description="cap on optimizer steps per retrain")
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(3e-3, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    label_smoothing: float = Field(
        0.05, ge=0, lt=1, description="share of each target spread over the other classes")
    seed: int = 0
    isolate: bool = Field(True, description="train in a child process (off: a thread)")
    pretrain_seconds: float = Field(
        180.0, ge=0, description="label-free (SimCLR) encoder pretraining budget, spent in "
        "the training child once the pool is ingested (0: off, the PCA representation stays)")
    pretrain_max_steps: int = Field(
        1000, ge=1, description="...and at most this many pretraining steps (small pools)")
    representation_fit_items: int = Field(
        10_000, ge=2, description="pool images the first (PCA) representation is fitted on")


class ScoringSettings(BaseModel):
    batch_size: int = Field(128, ge=1, description="images per forward pass: 128 keeps "
                            "a batch's activations in cache (60k scored in 3.6 s on 2 "
                            "cores, 7.6 s at 512; tests/benchmarks/bench_scoring.py)")
    mc_samples: int = Field(20, ge=2, description="MC-dropout passes for BALD and EIG")
    eig_targets: int = Field(64, ge=1, description="pool points EIG is measured against")
    threads: int = Field(2, ge=1)


class SelectionSettings(BaseModel):
    strategy: str = "auto"
    batch_size: int = Field(20, ge=1, description="items proposed per round")
    initial: int = Field(20, ge=1, description="items proposed before any model exists")
    group_size: int = Field(5, ge=1, description="look-alikes an annotator labels together")
    cold_start_wait_seconds: float = Field(
        30.0, ge=0, description="after ingest, wait this long for the first label-free "
        "representation before a random cold start (0: do not wait)")
    seed: int = 0


class LabelingSettings(BaseModel):
    lease_seconds: float = Field(300.0, gt=0)
    overlap: int = Field(1, ge=1, description="annotators per item (2+ for agreement)")
    max_upload_bytes: int = Field(5_000_000, ge=1)
    max_upload_pixels: int = Field(4096 * 4096, ge=1)


class Settings(BaseSettings):
    """Everything a fogmap process needs to start."""

    model_config = SettingsConfigDict(env_prefix="FOGMAP_", env_nested_delimiter="__")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Path(".fogmap")
    dataset: str = "digits"
    host: str = "127.0.0.1"
    api_port: int = 8000
    dashboard_port: int = 5006
    admin_token: str = ""
    allowed_origins: list[str] = Field(default_factory=list)
    log_level: str = "INFO"
    progress: bool = True

    training: TrainingSettings = TrainingSettings()
    scoring: ScoringSettings = ScoringSettings()
    selection: SelectionSettings = SelectionSettings()
    labeling: LabelingSettings = LabelingSettings()

    @model_validator(mode="after")
    def _refuse_unsafe_defaults(self) -> Settings:
        if self.env == "production":
            if len(self.admin_token) < 24:
                raise ValueError("FOGMAP_ADMIN_TOKEN must be set (24+ chars) in production")
            if "*" in self.allowed_origins:
                raise ValueError("wildcard origins are refused in production")
        if not self.admin_token:
            # Development: a fresh random token each start, printed by `fogmap up`.
            self.admin_token = secrets.token_urlsafe(24)
        return self

    @property
    def dashboard_origins(self) -> list[str]:
        hosts = {self.host, "localhost", "127.0.0.1"}
        return sorted({f"{h}:{self.dashboard_port}" for h in hosts} | set(self.allowed_origins))
