"""`/jobs`: submit work by name, list, look, cancel, retry, and follow progress as server-sent events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from tilewright.jobs import store
from tilewright.jobs.models import FINISHED, STATES
from tilewright.jobs.registry import TASKS
from tilewright.jobs.service import submit_job
from tilewright.jobs.view import Relative, public_job
from tilewright.server.deps import executor_of, require_token, settings_of
from tilewright.server.errors import responses
from tilewright.server.proxy import link

router = APIRouter(tags=["jobs"])


class JobRequest(BaseModel):
    kind: str = Field(description=f"One of: {', '.join(TASKS)}.", examples=["convert"])
    params: dict[str, Any] = Field(default_factory=dict, examples=[{"input": "/data/slides/a.svs", "kind": "dzi"}])


@router.post(
    "/jobs",
    status_code=201,
    dependencies=[Depends(require_token)],
    responses=responses(403, 404, 409),  # an input outside the roots, or missing; a key reused for other params
)
def create_job(
    body: JobRequest, request: Request, response: Response, idempotency_key: str | None = Header(None, max_length=128)
) -> dict[str, Any]:
    """Submit a job. The same idempotency key (default: hash of kind, parameters and input content) returns
    the existing job (200) and runs nothing twice."""
    settings = settings_of(request)
    job, created = submit_job(settings, executor_of(request), body.kind, body.params, key=idempotency_key)
    response.status_code = 201 if created else 200
    response.headers["Location"] = link(request, f"/jobs/{job['id']}")
    return public_job(settings, job)


@router.get("/jobs")
def list_jobs(
    request: Request,
    # the schema names the states (a generated client sends one of them); an unknown one is still a 400
    state: str | None = Query(None, json_schema_extra={"enum": list(STATES)}),
    kind: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=2**31),  # past SQLite's 64-bit integers it was a 500 (OverflowError)
) -> list[dict[str, Any]]:
    settings = settings_of(request)
    relative = Relative(settings)
    jobs = store.list_jobs(settings, state=state, kind=kind, limit=limit, offset=offset)
    return [public_job(settings, job, relative) for job in jobs]


@router.get("/jobs/{job_id}")
def get_job(job_id: str, request: Request) -> dict[str, Any]:
    settings = settings_of(request)
    return public_job(settings, store.get(settings, job_id))


@router.post("/jobs/{job_id}/cancel", dependencies=[Depends(require_token)])
def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    settings = settings_of(request)
    return public_job(settings, store.cancel(settings, job_id))  # an unknown id changes nothing and is a 404


@router.post("/jobs/{job_id}/retry", dependencies=[Depends(require_token)])
def retry_job(job_id: str, request: Request) -> dict[str, Any]:
    settings = settings_of(request)
    job = store.retry(settings, job_id)
    executor_of(request).submit(job_id)
    return public_job(settings, job)


@router.get("/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    """Server-sent events: `progress` whenever state, progress or stage change, then `end` when it finishes."""
    settings = settings_of(request)
    await run_in_threadpool(store.get, settings, job_id)  # 404 before the stream starts
    relative = Relative(settings)

    async def stream() -> AsyncIterator[str]:
        last: tuple[Any, ...] | None = None
        quiet_since = time.monotonic()
        while True:
            job = await run_in_threadpool(store.get, settings, job_id)
            snapshot = (job["state"], job["progress"], job["stage"], job["attempts"])
            if snapshot != last:
                last, quiet_since = snapshot, time.monotonic()
                yield f"event: progress\ndata: {json.dumps(public_job(settings, job, relative))}\n\n"
            if job["state"] in FINISHED:
                yield f"event: end\ndata: {json.dumps(public_job(settings, job, relative))}\n\n"
                return
            if time.monotonic() - quiet_since > 15:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.5)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
