"""Labeling API routes: validate, authorize, call the labeling service. Nothing more."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, HTTPException, Query, Request, Response, UploadFile, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fogmap.api.deps import Admin, Labeler, Ops, Reviewer, RuntimeDep, UserDep
from fogmap.catalog.datasets import DatasetError, decode_image, encode_png, fit_image
from fogmap.catalog.imagestore import parse_uri
from fogmap.core.events import DriftAlert, ImageIngested, parse, wrap

router = APIRouter(prefix="/api")
PNG_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"}


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NextIn(In):
    n: int = Field(5, ge=1, le=50)


class LabelIn(In):
    label: int = Field(ge=0)
    rationale: str = Field("", max_length=2000)
    shown_model_version: str | None = Field(None, pattern=r"^v[0-9]{4,}$")
    label_id: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{8,64}$",
                                 description="client-chosen id: retries are idempotent")


class ActionIn(In):
    action: Literal["dismiss", "request_expert", "mark_review", "second_opinion"]
    rationale: str = Field("", max_length=2000)


class RetractIn(In):
    reason: str = Field("", max_length=2000)


class UserIn(In):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Literal["annotator", "expert", "reviewer", "ops", "admin"]


@router.get("/me")
async def me(user: UserDep) -> dict[str, str]:
    """Who the token belongs to."""
    return {"name": user.name, "role": user.role}


@router.get("/classes")
async def classes(runtime: RuntimeDep, user: UserDep) -> list[str]:
    """The data set's class names, index = label."""
    return runtime.labeling.classes()


@router.get("/tasks")
async def my_tasks(runtime: RuntimeDep, user: Labeler) -> list[dict[str, Any]]:
    """Tasks leased to the caller."""
    return runtime.labeling.my_tasks(user)


@router.post("/tasks/next")
async def next_tasks(body: NextIn, runtime: RuntimeDep, user: Labeler) -> list[dict[str, Any]]:
    """Lease up to ``n`` tasks (look-alikes together); returns all the caller holds."""
    return runtime.labeling.lease_next(user, body.n)


@router.post("/tasks/{task_id}/label", status_code=status.HTTP_201_CREATED)
async def label_task(task_id: str, body: LabelIn, runtime: RuntimeDep, user: Labeler,
               response: Response) -> dict[str, Any]:
    """Label a leased task, with a rationale."""
    out = runtime.labeling.submit_label(user, task_id, body.label, body.rationale,
                                        body.shown_model_version, label_id=body.label_id)
    if out["duplicate"]:
        response.status_code = status.HTTP_200_OK
    return out


@router.post("/tasks/{task_id}/action")
async def act_on_task(task_id: str, body: ActionIn, runtime: RuntimeDep,
                user: Labeler) -> dict[str, Any]:
    """Quick actions: dismiss, request an expert, mark for review, second opinion."""
    return runtime.labeling.quick_action(user, task_id, body.action, body.rationale)


@router.post("/tasks/{task_id}/release", status_code=status.HTTP_204_NO_CONTENT)
async def release_task(task_id: str, runtime: RuntimeDep, user: Labeler) -> None:
    """Give a leased task back unlabeled."""
    runtime.labeling.release(user, task_id)


@router.post("/items/{item_id}/label", status_code=status.HTTP_201_CREATED)
async def label_item(item_id: str, body: LabelIn, runtime: RuntimeDep,
               user: Reviewer) -> dict[str, Any]:
    """Experts and reviewers label any pool item directly (disputes, reviews)."""
    return runtime.labeling.submit_label(user, None, body.label, body.rationale,
                                         body.shown_model_version, item_id=item_id,
                                         label_id=body.label_id)


@router.get("/items/{item_id}/image", response_class=Response)
async def item_image(item_id: str, runtime: RuntimeDep, user: UserDep,
                     scale: Annotated[int, Query(ge=1, le=8)] = 4) -> Response:
    """The item's pixels as PNG (re-encoded, never the uploaded bytes)."""
    image_uri = runtime.labeling.item_uri(user, item_id)
    pixels = await asyncio.to_thread(runtime.images.get, image_uri)
    return Response(encode_png(pixels, scale), media_type="image/png", headers=PNG_HEADERS)


@router.get("/items/{item_id}/labels")
async def item_labels(item_id: str, runtime: RuntimeDep, user: UserDep) -> list[dict[str, Any]]:
    """Labels of an item (annotators see only their own)."""
    runtime.labeling.item_uri(user, item_id)
    return runtime.labeling.labels_of(user, item_id)


@router.get("/items/{item_id}/similar")
async def similar(item_id: str, runtime: RuntimeDep, user: UserDep,
                  k: Annotated[int, Query(ge=1, le=50)] = 8,
                  labeled_only: bool = False) -> list[dict[str, Any]]:
    """Nearest items in the current embedding (the vector service)."""
    runtime.labeling.item_uri(user, item_id)
    labeled_only = labeled_only or user.role == "annotator"  # annotators see labeled ones
    hits = await runtime.vectors.similar(item_id, k, labeled_only)
    return [{"item_id": hit, "similarity": round(float(score), 4),
             "status": payload.get("status"), "predicted_class": payload.get("predicted_class")}
            for hit, score, payload in hits]


@router.get("/labels")
async def my_labels(runtime: RuntimeDep, user: UserDep) -> list[dict[str, Any]]:
    """The caller's labels (ops and admins: everyone's)."""
    return runtime.labeling.labels_of(user)


@router.post("/labels/{label_id}/retract")
async def retract(label_id: str, body: RetractIn, runtime: RuntimeDep,
            user: UserDep) -> dict[str, Any]:
    """Withdraw a label; training forgets it at the next retrain."""
    return runtime.labeling.retract(user, label_id, body.reason)


@router.post("/users", status_code=status.HTTP_201_CREATED)
async def create_user(body: UserIn, runtime: RuntimeDep, user: Admin) -> dict[str, str]:
    """Create a user; the token is shown once."""
    token = runtime.labeling.create_user(body.name, body.role)
    return {"name": body.name, "role": body.role, "token": token}


@router.get("/status")
async def system_status(runtime: RuntimeDep, user: UserDep) -> dict[str, Any]:
    """Queue sizes and label counts."""
    return runtime.labeling.stats()


@router.post("/images", status_code=status.HTTP_201_CREATED)
async def upload_image(request: Request, runtime: RuntimeDep, user: Admin,
                       file: Annotated[UploadFile, File()]) -> dict[str, str]:
    """Add one PNG/JPEG to the pool (re-encoded; size and pixel limits apply)."""
    cfg = runtime.settings.labeling
    declared = int(request.headers.get("content-length") or 0)
    if declared > cfg.max_upload_bytes + 4096:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "upload too large")
    raw = await file.read(cfg.max_upload_bytes + 1)
    if len(raw) > cfg.max_upload_bytes:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "upload too large")
    try:
        pixels = decode_image(raw, cfg.max_upload_pixels)
    except DatasetError as exc:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from exc
    dataset = runtime.dataset_name
    shape = runtime.images.shape(dataset) if dataset else None
    if dataset is None or shape is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "no data set ingested yet")
    fitted = fit_image(pixels, shape)
    [image_uri] = await asyncio.to_thread(runtime.images.append, dataset, fitted[None])
    item_id = f"{dataset}-u{parse_uri(image_uri)[1]:06d}-{uuid.uuid4().hex[:6]}"
    event = ImageIngested(item_id=item_id, dataset=dataset, split="pool", uri=image_uri,
                          height=shape[0], width=shape[1], channels=shape[2])
    await runtime.bus.publish([wrap(event, "/fogmap/api", f"ingest:{item_id}")])
    return {"item_id": item_id, "uri": image_uri}


@router.post("/events", status_code=status.HTTP_202_ACCEPTED)
async def publish_event(request: Request, runtime: RuntimeDep, user: Ops) -> dict[str, str]:
    """External monitors publish ``drift.alert`` CloudEvents (schema-validated)."""
    raw = await request.body()
    if len(raw) > 64_000:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "event too large")
    try:
        env = parse(raw)
    except (ValidationError, ValueError) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"malformed event: {exc}") from exc
    if env.name != DriftAlert.name:
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"{env.type} may not be published from outside")
    await runtime.bus.publish([env])
    return {"id": env.id}
