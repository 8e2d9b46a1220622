"""The FastAPI application: routes, JSON errors, metrics, health, and the life cycle of the executor and
the tile service.

`create_app(settings)` does no work at import; the lifespan upgrades the database,
creates the folders, starts the executor and the tile service, and stops both on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tilewright import __version__
from tilewright.config import Settings, get_settings
from tilewright.db import init_db
from tilewright.events import sources as event_sources
from tilewright.jobs.executors import Executor, check_celery_config, make_executor
from tilewright.server import errors, metrics, openapi, routes_compat_azure, routes_compat_items, routes_ui
from tilewright.server.deps import require_token
from tilewright.server.health import router as health_router
from tilewright.server.limits import BodyLimit
from tilewright.server.proxy import ProxyScope
from tilewright.server.routes_events import router as events_router
from tilewright.server.routes_events import source_routes
from tilewright.server.routes_images import router as images_router
from tilewright.server.routes_jobs import router as jobs_router
from tilewright.server.routes_process import router as process_router
from tilewright.server.tiles.fastpath import CachedTiles
from tilewright.server.tiles.routes import router as tiles_router
from tilewright.server.tiles.service import TileService

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, executor: Executor | None = None) -> FastAPI:
    """The app; `executor` defaults to the configured one (embedded, or Celery with fallback)."""
    settings = settings or get_settings()
    if executor is None and settings.executor == "celery":
        check_celery_config(settings)  # a broker or result backend Celery cannot load: one line at start-up

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        init_db(settings)
        for folder in (settings.resolved_output_root(), settings.resolved_upload_dir(), settings.work_root()):
            folder.mkdir(parents=True, exist_ok=True)
        app.state.tiles = TileService(settings)  # tile threads, open slides, the tile cache (Redis)
        try:
            app.state.executor = executor or make_executor(settings)
            app.state.executor.start()
            log.info("tilewright %s serving with the %s executor", __version__, app.state.executor.name)
            try:
                yield
            finally:
                app.state.executor.stop()
        finally:
            app.state.tiles.close()
            app.state.tiles = None

    app = FastAPI(
        title="tilewright",
        version=__version__,
        lifespan=lifespan,
        description="Upload slides, run conversion jobs, follow their progress, fetch the pyramids.",
    )
    app.state.settings = settings
    app.state.executor = executor
    app.state.tiles = None  # the TileService, while the lifespan runs
    errors.install(app)
    app.add_middleware(CachedTiles)  # first, so innermost: inside metrics and CORS
    app.add_middleware(
        BodyLimit, limit=settings.max_request_body_bytes, timeout=settings.request_read_timeout_seconds
    )  # raises its 413/408 where a route reads the body: the error handlers answer them as JSON
    metrics.install(app, settings)
    app.include_router(tiles_router)  # first: /images/{id}.dzi must not be taken by /images/{image_id}
    app.include_router(images_router)
    app.include_router(jobs_router)
    app.include_router(health_router)
    app.include_router(process_router)
    app.include_router(routes_compat_azure.router)  # the Azure Functions pipeline's /api/resize
    app.include_router(routes_compat_items.router)  # py-image-server's /items/
    app.include_router(source_routes(event_sources.SOURCES))  # the registry as it is now
    app.include_router(events_router)
    routes_ui.install(app, settings)  # web page, /static, /vendor/openseadragon, CORS

    app.mount(
        "/outputs", routes_ui.OutputFiles(directory=settings.resolved_output_root(), check_dir=False), name="outputs"
    )
    app.add_middleware(ProxyScope, settings=settings)  # last, so outermost: every other part sees the settled scope
    openapi.install(app, require_token)  # after every route: the schema declares what each one answers
    return app
