"""Event contracts: pydantic mirrors of the JSON Schemas in ``schemas/events/``.

Every event travels in a CloudEvents 1.0 envelope (:class:`Envelope`). ``type`` is
``fogmap.<name>``, ``subject`` the item id (or the batch / model / dataset id for events
about a group), ``dataschema`` names the schema and its version. Events are facts, named
in the past tense. A change here must regenerate ``schemas/`` (``fogmap schemas export``);
``tests/unit/test_schemas.py`` fails when the two drift apart.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

ItemId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
ModelVersion = Annotated[str, Field(pattern=r"^v[0-9]{4,}$")]
RepresentationVersion = Annotated[str, Field(pattern=r"^r[0-9]{4,}$")]
Prob = Annotated[float, Field(ge=0.0, le=1.0)]
NonNeg = Annotated[float, Field(ge=0.0)]
Text = Annotated[str, Field(max_length=2000)]
Actor = Annotated[str, Field(min_length=1, max_length=64)]


class EventData(BaseModel):
    """Base of every event payload: immutable, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    name: ClassVar[str]
    topic: ClassVar[str]
    version: ClassVar[int] = 1
    description: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """An event type is about its item (an ``item_id`` field) or names its own
        subject: one that is neither is refused where it is defined, not when published."""
        super().__pydantic_init_subclass__(**kwargs)
        if "item_id" not in cls.model_fields and cls.subject is EventData.subject:
            raise TypeError(f"{cls.__name__} has no item_id: it must override subject()")

    def subject(self) -> str:
        """What the event is about (its envelope's subject): the item, for item events."""
        return str(self.__dict__["item_id"])


# --- images -----------------------------------------------------------------------------


class DatasetRegistered(EventData):
    name: ClassVar[str] = "dataset.registered"
    topic: ClassVar[str] = "fogmap.images"
    description: ClassVar[str] = "A data set was registered: its classes and image shape."
    dataset: str
    classes: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=2)
    image_shape: tuple[int, int, int]
    pool_size: int = Field(ge=0)
    test_size: int = Field(ge=0)

    def subject(self) -> str:
        return f"dataset:{self.dataset}"


class ImageIngested(EventData):
    name: ClassVar[str] = "image.ingested"
    topic: ClassVar[str] = "fogmap.images"
    description: ClassVar[str] = "An image entered the pool (or the held-out test split)."
    item_id: ItemId
    dataset: str
    split: Literal["pool", "test"]
    uri: str
    height: int = Field(ge=1)
    width: int = Field(ge=1)
    channels: int = Field(ge=1, le=4)
    label: int | None = Field(None, ge=0, description="known class; held-out images only")


# --- predictions ------------------------------------------------------------------------


class PredictionScored(EventData):
    name: ClassVar[str] = "prediction.scored"
    topic: ClassVar[str] = "fogmap.predictions"
    description: ClassVar[str] = "A model version scored one pool item: every measure."
    item_id: ItemId
    model_version: ModelVersion
    predicted_class: int = Field(ge=0)
    probabilities: list[Prob]
    entropy: NonNeg
    margin: Prob
    least_confidence: Prob
    bald: NonNeg
    eig: NonNeg = Field(description="expected information gain about pool predictions, nats")
    embedding: list[float]


class PoolScored(EventData):
    name: ClassVar[str] = "pool.scored"
    topic: ClassVar[str] = "fogmap.predictions"
    description: ClassVar[str] = "A model version finished scoring the whole pool."
    model_version: ModelVersion
    items: int = Field(ge=0)
    seconds: NonNeg

    def subject(self) -> str:
        return f"model:{self.model_version}"


class ProjectionUpdated(EventData):
    name: ClassVar[str] = "projection.updated"
    topic: ClassVar[str] = "fogmap.projections"
    description: ClassVar[str] = "An item's 2-D map position for a model version."
    item_id: ItemId
    model_version: ModelVersion
    method: Literal["pca", "umap"]
    x: float
    y: float
    representation_version: RepresentationVersion | None = Field(
        None, description="the label-free representation placed (then model_version is "
        "the newest model when placed, v0000 before any); None: the model's embedding")


# --- selection and tasks ----------------------------------------------------------------


class Neighbour(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    item_id: ItemId
    label: int = Field(ge=0)
    similarity: float


class ProposalReason(BaseModel):
    """Why an item was proposed: its uncertainty, EIG and nearest labeled neighbours."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    strategy: str
    score: float
    entropy: NonNeg | None = None
    margin: Prob | None = None
    least_confidence: Prob | None = None
    bald: NonNeg | None = None
    eig: NonNeg | None = None
    predicted_class: int | None = None
    neighbours: list[Neighbour] = Field(default_factory=list, max_length=10)


class ProposedItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    item_id: ItemId
    group: int = Field(ge=0, description="look-alikes share a group")
    reason: ProposalReason


class BatchProposed(EventData):
    name: ClassVar[str] = "batch.proposed"
    topic: ClassVar[str] = "fogmap.proposals"
    description: ClassVar[str] = "The selection service proposed items to label, grouped."
    batch_id: str
    model_version: ModelVersion | None
    strategy: str
    items: list[ProposedItem] = Field(min_length=1)

    def subject(self) -> str:
        return f"batch:{self.batch_id}"


class TaskAssigned(EventData):
    name: ClassVar[str] = "task.assigned"
    topic: ClassVar[str] = "fogmap.tasks"
    description: ClassVar[str] = "An item was leased to an annotator."
    task_id: str
    item_id: ItemId
    annotator: Actor
    lease_expires_at: datetime


class TaskReleased(EventData):
    name: ClassVar[str] = "task.released"
    topic: ClassVar[str] = "fogmap.tasks"
    description: ClassVar[str] = "An annotator gave a leased item back unlabeled."
    task_id: str
    item_id: ItemId
    annotator: Actor


class TaskExpired(EventData):
    name: ClassVar[str] = "task.expired"
    topic: ClassVar[str] = "fogmap.tasks"
    description: ClassVar[str] = "A lease ran out; the item went back to the queue."
    task_id: str
    item_id: ItemId
    annotator: Actor


# --- human decisions --------------------------------------------------------------------


class LabelSubmitted(EventData):
    name: ClassVar[str] = "label.submitted"
    topic: ClassVar[str] = "fogmap.labels"
    description: ClassVar[str] = "A person (or a simulated one) labeled an item."
    label_id: str
    item_id: ItemId
    task_id: str | None
    label: int = Field(ge=0)
    class_name: str
    rationale: Text = ""
    action: Literal["label"] = "label"
    annotator: Actor
    role: str
    shown_model_version: ModelVersion | None


class LabelRetracted(EventData):
    name: ClassVar[str] = "label.retracted"
    topic: ClassVar[str] = "fogmap.labels"
    description: ClassVar[str] = "A label was withdrawn; training forgets it."
    label_id: str
    item_id: ItemId
    retracted_by: Actor
    reason: Text = ""


class ReviewRequested(EventData):
    name: ClassVar[str] = "review.requested"
    topic: ClassVar[str] = "fogmap.labels"
    description: ClassVar[str] = "An annotator asked for an expert, a review or a 2nd opinion."
    item_id: ItemId
    task_id: str | None
    kind: Literal["request_expert", "mark_review", "second_opinion"]
    annotator: Actor
    rationale: Text = ""


class ItemDismissed(EventData):
    name: ClassVar[str] = "item.dismissed"
    topic: ClassVar[str] = "fogmap.labels"
    description: ClassVar[str] = "An annotator dismissed an item (unusable, out of scope)."
    item_id: ItemId
    task_id: str | None
    annotator: Actor
    rationale: Text = ""


# --- models and governance --------------------------------------------------------------


class CalibrationBin(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    lower: Prob
    upper: Prob
    confidence: Prob
    accuracy: Prob
    count: int = Field(ge=0)


class ModelMetrics(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    accuracy: Prob
    ece: Prob
    nll: NonNeg
    test_items: int = Field(ge=0)
    calibration: list[CalibrationBin]


class ModelPublished(EventData):
    name: ClassVar[str] = "model.published"
    topic: ClassVar[str] = "fogmap.models"
    description: ClassVar[str] = "A retrained model version, with held-out metrics."
    model_version: ModelVersion
    labels: int = Field(ge=0, description="labels it was trained on")
    metrics: ModelMetrics
    weights_uri: str
    train_seconds: NonNeg

    def subject(self) -> str:
        return f"model:{self.model_version}"


class EncoderPublished(EventData):
    name: ClassVar[str] = "encoder.published"
    topic: ClassVar[str] = "fogmap.models"
    description: ClassVar[str] = (
        "A label-free representation of the pool: a vector per item, stored as an artifact.")
    representation_version: RepresentationVersion
    kind: Literal["pca", "simclr"] = Field(
        description="pca: of the pixels; simclr: a self-supervised pretrained encoder")
    dims: int = Field(ge=1)
    items: int = Field(ge=0, description="pool items with a vector")
    pretrain_steps: int = Field(ge=0, description="0 for pca")
    pretrain_seconds: NonNeg = Field(description="0 for pca")
    vectors_uri: str = Field(description="the artifact: item ids and a float32 matrix")

    def subject(self) -> str:
        return f"representation:{self.representation_version}"


class TrainingProgressed(EventData):
    name: ClassVar[str] = "training.progressed"
    topic: ClassVar[str] = "fogmap.models"
    description: ClassVar[str] = "Background retraining advanced (shown as a progress bar)."
    model_version: ModelVersion
    labels: int = Field(ge=0)
    step: int = Field(ge=0)
    total: int = Field(ge=1)

    def subject(self) -> str:
        return f"model:{self.model_version}"


class DriftAlert(EventData):
    name: ClassVar[str] = "drift.alert"
    topic: ClassVar[str] = "fogmap.alerts"
    description: ClassVar[str] = "A governance monitor crossed its threshold."
    kind: Literal["class_balance", "label_drift", "disagreement", "model_human_dispute"]
    severity: Literal["info", "warning", "critical"]
    message: Text
    value: float
    threshold: float

    def subject(self) -> str:
        return f"alert:{self.kind}"


EVENT_TYPES: dict[str, type[EventData]] = {
    cls.name: cls
    for cls in (
        DatasetRegistered, ImageIngested, PredictionScored, PoolScored, ProjectionUpdated,
        BatchProposed, TaskAssigned, TaskReleased, TaskExpired, LabelSubmitted,
        LabelRetracted, ReviewRequested, ItemDismissed, ModelPublished, TrainingProgressed,
        DriftAlert, EncoderPublished,
    )
}

TOPICS: dict[str, list[str]] = {}
for _name, _cls in EVENT_TYPES.items():
    TOPICS.setdefault(_cls.topic, []).append(_name)


def dataschema(name: str) -> str:
    """The versioned schema URI carried in ``dataschema``."""
    return f"urn:fogmap:schema:{name}:v{EVENT_TYPES[name].version}"


class Envelope(BaseModel):
    """A CloudEvents 1.0 envelope around one event payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1, max_length=128)
    type: str = Field(pattern=r"^fogmap\.[a-z]+\.[a-z]+$")
    time: datetime
    subject: str = Field(min_length=1, max_length=160)
    dataschema: str
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return self.type.removeprefix("fogmap.")

    @property
    def topic(self) -> str:
        return EVENT_TYPES[self.name].topic

    def payload(self) -> EventData:
        """The typed payload; raises ``pydantic.ValidationError`` when it does not conform."""
        return EVENT_TYPES[self.name].model_validate(self.data)


class UnknownEventType(ValueError):
    pass


def wrap(data: EventData, source: str, event_id: str | None = None) -> Envelope:
    """Put a payload into its envelope; ``event_id`` makes republishing idempotent."""
    return Envelope(
        id=event_id or uuid.uuid4().hex,
        source=source,
        type=f"fogmap.{data.name}",
        time=datetime.now(UTC),
        subject=data.subject(),
        dataschema=dataschema(data.name),
        data=data.model_dump(mode="json"),
    )


def parse(raw: str | bytes) -> Envelope:
    """Validate an envelope and its payload; raise ``ValueError`` on anything malformed."""
    env = Envelope.model_validate_json(raw)
    if env.name not in EVENT_TYPES:
        raise UnknownEventType(f"unknown event type {env.type!r}")
    if env.dataschema != dataschema(env.name):
        raise UnknownEventType(f"unsupported dataschema {env.dataschema!r} for {env.type}")
    env.payload()
    return env


def version_seq(version: str | None) -> int:
    """Model versions are ``v0001``, ``v0002``... (representations ``r0001``...); ``None``
    (no model yet) sorts first."""
    return int(version[1:]) if version else 0


def format_version(seq: int, prefix: str = "v") -> str:
    return f"{prefix}{seq:04d}"
