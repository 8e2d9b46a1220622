"""The web page (upload, live jobs, gallery, viewer), its static files, OpenSeadragon, and CORS.

The page is plain HTML, CSS and JavaScript in `server/static/`; OpenSeadragon comes from
npm at set-up time (`make` copies it to `build/openseadragon/`, or `openseadragon_dir`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from tilewright.config import Settings
from tilewright.server.tiles.deepzoom import DZI_MEDIA_TYPE

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
SOURCE_TREE = Path(__file__).resolve().parents[3]
router = APIRouter(include_in_schema=False)


class OutputFiles(StaticFiles):
    """The job outputs (`/outputs`): files as they are, and .dzi as XML, as the dynamic .dzi route sends it.

    Python's `mimetypes` knows no .dzi (it would go out as text/plain), and adding it there would
    change the process's table for everyone.
    """

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if str(full_path).endswith(".dzi") and "content-type" in response.headers:
            response.headers["content-type"] = DZI_MEDIA_TYPE
        return response


def openseadragon_dir(settings: Settings) -> Path:
    return Path(settings.openseadragon_dir) if settings.openseadragon_dir else SOURCE_TREE / "build" / "openseadragon"


@router.get("/")
@router.get("/ui")
def index() -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/ui/recipes")
def recipes(request: Request) -> list[str]:
    """Names of the recipes a job can use (built-in and the user's), for the upload form."""
    try:
        # tilewright.recipes costs ~40 ms of server start-up, and only this form asks
        from tilewright.recipes import list_recipes

        return sorted(list_recipes(request.app.state.settings))
    except Exception as exc:  # noqa: BLE001 - the page then offers the default only
        log.debug("listing recipes: %s", exc)
        return ["default"]


def install(app: FastAPI, settings: Settings) -> None:
    """The page's routes, `/static`, `/vendor/openseadragon` and the CORS middleware."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    osd = openseadragon_dir(settings)
    if not (osd / "openseadragon.min.js").is_file():
        log.warning(
            "OpenSeadragon not found in %s: the viewer will not work (run `make` or set TILEWRIGHT_OPENSEADRAGON_DIR)",
            osd,
        )
    app.mount("/vendor/openseadragon", StaticFiles(directory=osd, check_dir=False), name="openseadragon")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "HEAD"],
            allow_headers=["*"],
            expose_headers=["ETag", "X-Tile-Cache", "X-Tile-Source", "Content-Range"],  # Content-Range: ranges.py
            max_age=3600,
        )
