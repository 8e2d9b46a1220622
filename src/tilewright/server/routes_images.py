"""`/images` and `/collections`: upload a slide (it is converted by a job), list, look, delete."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, or_, select
from starlette.concurrency import run_in_threadpool

from tilewright.config import Settings
from tilewright.convert import make_options
from tilewright.db import session_scope
from tilewright.errors import TilewrightError, UnsupportedFormatError
from tilewright.formats import open_slide
from tilewright.jobs import store
from tilewright.jobs.models import Image
from tilewright.jobs.params import check_collection, check_output_kind
from tilewright.jobs.publish import output_store, store_prefix
from tilewright.jobs.service import submit_job
from tilewright.jobs.view import Relative, public_job
from tilewright.outputs import WRITERS
from tilewright.recipes import load_recipe
from tilewright.server import openapi
from tilewright.server.deps import executor_of, require_token, settings_of
from tilewright.server.errors import ApiError, responses
from tilewright.server.proxy import link
from tilewright.server.tiles.urls import ID_CONVERTOR  # registers the convertor: image ids only
from tilewright.server.upload import Received, discard, receive
from tilewright.storage import MANIFEST, StorageError, join_key

router = APIRouter(tags=["images"])


def _image_view(
    settings: Settings,
    image: Image,
    jobs: dict[str, dict[str, Any]] | None = None,
    relative: Relative | None = None,
) -> dict[str, Any]:
    """An image record with its job (as the API shows jobs: `public_job`), its state and output URLs;
    `jobs`, `relative`: already read and made (a page of images)."""
    data = image.to_dict()
    if image.job_id:
        if jobs is None:
            jobs = store.get_many(settings, [image.job_id])
        job = jobs.get(image.job_id)
        data["job"] = public_job(settings, job, relative) if job else None
        data["state"] = job["state"] if job else "unknown"
        data["urls"] = (job.get("outputs") or {}).get("urls", []) if job else []
    return data


def _inspect(path: Path, filename: str, settings: Settings) -> tuple[str, int, int]:
    """Open the upload as the converter will: an unsupported or broken file is refused now (415/400)."""
    try:
        with open_slide(path, settings) as reader:
            return reader.name, reader.width, reader.height
    except UnsupportedFormatError as exc:
        raise ApiError(415, f"{filename}: {exc.reason}") from None
    except TilewrightError as exc:
        raise ApiError(exc.http_status, f"{filename}: {exc.reason}") from None


@router.post(
    "/images",
    status_code=201,
    dependencies=[Depends(require_token)],
    responses=responses(409, 411, 415),
    openapi_extra=openapi.body("multipart/form-data", "application/octet-stream"),
)
async def upload_image(
    request: Request,
    response: Response,
    collection: str = Query("default", description="Collection the image belongs to."),
    kind: str = Query("dzi", description=f"Output kind: {', '.join(WRITERS)}."),
    recipe: str | None = Query(
        None,
        description="Run this recipe instead of a plain conversion "
        "(default: TILEWRIGHT_UPLOAD_RECIPE; empty: convert).",
    ),
    tile_size: int | None = Query(
        None, ge=16, le=8192, description="Tile size of a plain conversion (default: the kind's setting)."
    ),
    base_only: bool = Query(False, description="TIFF: full resolution only, no lower levels."),
    idempotency_key: str | None = Header(None, max_length=128),
) -> dict[str, Any]:
    """Upload an image or slide (multipart field `file`, or the raw body with `?filename=`). Returns the image
    record and the job converting it to OUTPUT_ROOT/COLLECTION/IMAGE_ID/slide.*"""
    settings = settings_of(request)
    check_collection(collection)
    check_output_kind(kind)
    _check_recipe(recipe, settings)
    # writer options of a plain conversion (`tilewright upload -t/-b`), checked now as the job will check them
    options = {
        name: value for name, value in (("tile_size", tile_size), ("base_only", base_only or None)) if value is not None
    }
    if options:
        make_options(kind, settings, tile_size=tile_size, base_only=base_only)
    upload_dir = settings.resolved_upload_dir()
    received = await receive(request, upload_dir, settings.max_upload_bytes)
    collection = received.fields.get("collection", collection)
    chosen = received.fields.get("recipe", recipe)
    # not given: the configured upload recipe; given empty (the page's "none"): a plain conversion to `kind`
    checked, recipe = recipe, (settings.upload_recipe if chosen is None else chosen) or None
    try:
        check_collection(collection)
        if recipe != checked:  # a form field or the configured default: not yet checked
            _check_recipe(recipe, settings)
        fmt, width, height = await run_in_threadpool(_inspect, received.path, received.filename, settings)
    except BaseException:
        discard(received.path)
        raise
    if options and recipe:
        discard(received.path)
        raise ApiError(400, "tile_size and base_only apply to a plain conversion, not to a recipe")
    return await run_in_threadpool(
        _record, request, response, received, collection, kind, fmt, width, height, idempotency_key, recipe, options
    )


def _check_recipe(recipe: str | None, settings: Settings) -> None:
    """An unknown or broken recipe is refused at upload time (400), before the body is read."""
    if recipe:
        load_recipe(recipe, settings)


def _record(
    request: Request,
    response: Response,
    received: Received,
    collection: str,
    kind: str,
    fmt: str,
    width: int,
    height: int,
    idempotency_key: str | None,
    recipe: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    settings = settings_of(request)
    image_id = store.new_id()
    folder = settings.resolved_upload_dir() / image_id
    folder.mkdir(parents=True)
    path = folder / received.filename
    received.path.rename(path)
    what = f"recipe:{recipe}" if recipe else kind + "".join(f"\0{k}={v}" for k, v in sorted((options or {}).items()))
    key = idempotency_key or hashlib.sha256(f"upload\0{collection}\0{what}\0{received.sha256}".encode()).hexdigest()
    if recipe:
        job_kind, params = (
            "recipe",
            {"input": str(path), "recipe": recipe, "collection": collection, "image_id": image_id},
        )
    else:
        job_kind, params = (
            "convert",
            {
                "input": str(path),
                "kind": kind,
                "collection": collection,
                "image_id": image_id,
                **(options or {}),
            },
        )
    try:
        job, created = submit_job(settings, executor_of(request), job_kind, params, key=key)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    with session_scope(settings) as session:
        if not created:  # the same upload again: give back what exists, keep no second copy
            shutil.rmtree(folder, ignore_errors=True)
            existing = session.scalars(select(Image).where(Image.job_id == job["id"])).first()
            if existing is not None:
                response.status_code = 200
                return {"image": _image_view(settings, existing), "job": public_job(settings, job)}
            raise ApiError(409, f"idempotency key already used by job {job['id']}, which is not an upload")
        image = Image(
            id=image_id,
            collection=collection,
            filename=received.filename,
            name=received.name or received.filename,
            path=str(path),
            size=received.size,
            sha256=received.sha256,
            format=fmt,
            width=width,
            height=height,
            kind=kind,
            job_id=job["id"],
        )
        session.add(image)
        session.flush()
        response.headers["Location"] = link(request, f"/images/{image_id}")
        return {"image": _image_view(settings, image), "job": public_job(settings, job)}


class ImageQuery(BaseModel):
    """The query of `GET /images`: a page of the images, newest first, maybe of one collection or a search."""

    collection: str | None = Field(None, max_length=100, description="Only the images of this collection.")
    q: str | None = Field(
        None,
        max_length=200,
        description="Only the images whose name (as uploaded, or as stored) or id contains this text, in any case.",
    )
    limit: int = Field(100, ge=1, le=1000, description="At most this many images.")
    # bounded: past SQLite's 64-bit integers an offset was a 500 (OverflowError)
    offset: int = Field(0, ge=0, le=2**31, description="Skip this many (the images before this page).")


TOTAL_HEADER = {
    "X-Total-Count": {
        "description": "How many images match (collection, q), all pages together.",
        "schema": {"type": "integer"},
    }
}


@router.get(
    "/images",
    responses={200: {"headers": TOTAL_HEADER}, **responses(422)},
    summary="A page of the images, newest first (search with q, page with limit/offset)",
)
def list_images(request: Request, response: Response, query: Annotated[ImageQuery, Query()]) -> list[dict[str, Any]]:
    settings = settings_of(request)
    where = []
    if query.collection is not None:
        where.append(Image.collection == query.collection)
    if query.q:
        where.append(
            or_(
                Image.name.icontains(query.q, autoescape=True),
                Image.filename.icontains(query.q, autoescape=True),
                Image.id.istartswith(query.q, autoescape=True),
            )
        )
    # newest first, the id breaking ties: pages neither repeat nor skip an image
    page = select(Image).where(*where).order_by(Image.created_at.desc(), Image.id.desc())
    with session_scope(settings) as session:
        images = list(session.scalars(page.limit(query.limit).offset(query.offset)))
        total = session.scalar(select(func.count()).select_from(Image).where(*where))
        response.headers["X-Total-Count"] = str(total or 0)
        jobs = store.get_many(settings, [image.job_id for image in images])  # one query, not one per image
        relative = Relative(settings)
        return [_image_view(settings, image, jobs, relative) for image in images]


@router.get(f"/images/{{image_id:{ID_CONVERTOR}}}", responses=responses(404))
def get_image(image_id: str, request: Request) -> dict[str, Any]:
    settings = settings_of(request)
    with session_scope(settings) as session:
        image = session.get(Image, image_id)
        if image is None:
            raise ApiError(404, f"no image {image_id!r}")
        return _image_view(settings, image)


@router.delete(
    f"/images/{{image_id:{ID_CONVERTOR}}}", dependencies=[Depends(require_token)], responses=responses(401, 404)
)
def delete_image(image_id: str, request: Request) -> dict[str, Any]:
    """Delete the record, the uploaded file and the outputs (also the output store's copy: its manifest
    first, so it stops being served at once); a conversion still running is cancelled."""
    settings = settings_of(request)
    result: dict[str, Any] = {"deleted": image_id}
    with session_scope(settings) as session:
        image = session.get(Image, image_id)
        if image is None:
            raise ApiError(404, f"no image {image_id!r}")
        if image.job_id:
            try:
                store.cancel(settings, image.job_id)
            except (store.JobNotFoundError, store.JobStateError):
                pass
        shutil.rmtree(settings.resolved_upload_dir() / image.id, ignore_errors=True)
        shutil.rmtree(settings.resolved_output_root() / image.collection / image.id, ignore_errors=True)
        removed = _delete_from_store(settings, image.collection, image.id)
        if removed is not None:
            result["store"] = removed
        session.delete(image)
    return result


def _delete_from_store(settings: Settings, collection: str, image_id: str) -> dict[str, Any] | None:
    """Remove the output store's copy of an image's outputs; None when no store is configured."""

    try:
        found = output_store(settings)
        if found is None:
            return None
        target, base = found
        prefix = store_prefix(base, collection, image_id)
        target.delete(join_key(prefix, MANIFEST))  # unpublished from here on
        return {"url": target.url(prefix), "removed": target.delete_prefix(prefix) + 1}
    except (StorageError, TilewrightError) as exc:  # the record goes anyway; say what stays behind
        return {"error": f"the output store's copy could not be removed: {getattr(exc, 'reason', exc)}"}


@router.get("/collections")
def list_collections(request: Request) -> list[dict[str, Any]]:
    settings = settings_of(request)
    query = (
        select(Image.collection, func.count(), func.coalesce(func.sum(Image.size), 0))
        .group_by(Image.collection)
        .order_by(Image.collection)
    )
    with session_scope(settings) as session:
        return [{"name": name, "images": count, "bytes": int(size)} for name, count, size in session.execute(query)]
