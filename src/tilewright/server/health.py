"""`/healthz` (the process answers) and `/readyz` (every part a request needs is usable, or 503 saying which
is not: database, queue, and in Celery mode broker and workers, storage).

`/readyz` is bounded: the database is asked in a helper thread and given `DB_TIMEOUT` seconds (a
database that does not answer is reported, not waited for), and the broker and worker checks are the
Celery executor's cached results (refreshed every `celery_recovery_interval` seconds in the background).
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import Future
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from tilewright import __version__
from tilewright.config import Settings
from tilewright.db import get_engine
from tilewright.server.deps import settings_of

router = APIRouter(tags=["health"])
DB_TIMEOUT = 0.8
_pending: dict[str, Future[None]] = {}  # database URL -> a check still running (never two at once)
_lock = threading.Lock()


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok", "version": __version__}


def _select_one(settings: Settings, done: Future[None]) -> None:
    try:
        with get_engine(settings.resolved_database_url()).connect() as conn:
            conn.execute(text("SELECT 1"))
        done.set_result(None)
    except Exception as exc:  # noqa: BLE001 - reported as the reason
        done.set_exception(exc)


def database_check(settings: Settings) -> dict[str, Any]:
    url = settings.resolved_database_url()
    with _lock:
        done = _pending.get(url)
        if done is None or done.done():
            done = _pending[url] = Future()
            threading.Thread(target=_select_one, args=(settings, done), daemon=True, name="readyz-db").start()
    try:
        done.result(timeout=DB_TIMEOUT)
        return {"ok": True}
    except TimeoutError:
        return {"ok": False, "detail": f"no answer within {DB_TIMEOUT:g} s"}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}


@router.get(
    "/readyz",
    responses={503: {"description": "Some part is not usable; `checks` says which, with the reason."}},
)
def readyz(request: Request) -> JSONResponse:
    """Readiness: database, queue (Celery: broker, and at least one worker answering) and storage all usable
    (503 with the reasons otherwise)."""
    settings = settings_of(request)
    checks: dict[str, dict[str, Any]] = {"database": database_check(settings)}
    current = request.app.state.executor
    ok, detail = current.ready() if current is not None else (False, "no executor")
    checks["queue"] = {"ok": ok, "detail": detail, "executor": getattr(current, "name", None)}
    if current is not None:
        checks.update(current.checks())
    for name, folder in (("outputs", settings.resolved_output_root()), ("uploads", settings.resolved_upload_dir())):
        probe = folder / f".probe-{uuid.uuid4().hex}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
            checks[f"storage_{name}"] = {"ok": True}
        except OSError as exc:
            checks[f"storage_{name}"] = {"ok": False, "detail": f"{folder}: {exc.strerror}"}
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
