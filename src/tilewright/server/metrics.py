"""Prometheus metrics: request latency (measured here), jobs by state and job durations (read from the
database at scrape time, so they are right whatever process or machine ran the jobs)."""

from __future__ import annotations

import time
from collections.abc import Iterator

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from starlette._utils import get_route_path  # the router's own rule: the path under the root path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tilewright.config import Settings
from tilewright.jobs import store

DURATION_BOUNDS = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]
ROUTE_KEY = "tilewright.route"
"""The scope key a middleware that answers before routing (the tile fast path) names its route under."""


class _JobCollector:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily("tilewright_jobs", "Jobs in the database by state.", labels=["state"])
        for state, count in store.counts_by_state(self.settings).items():
            states.add_metric([state], count)
        yield states
        durations = HistogramMetricFamily(
            "tilewright_job_duration_seconds", "Run time of finished jobs (last attempt).", labels=["kind"]
        )
        buckets, sums = store.duration_buckets(self.settings, DURATION_BOUNDS)
        for kind, counts in buckets.items():
            pairs = [(str(b), c) for b, c in zip(DURATION_BOUNDS, counts[:-1], strict=True)] + [("+Inf", counts[-1])]
            durations.add_metric([kind], pairs, sums[kind])
        yield durations


class _Measure:
    """Request latency by method, route template and status, as a plain ASGI middleware.

    (Starlette's `@app.middleware("http")` wraps every response in a stream of its own,
    which costs more than serving a cached tile.) The route is the template the router
    matched, without `:int` convertors (the name the tile fast path gives, `ROUTE_KEY`, for
    the tiles it answers itself).
    """

    def __init__(self, app: ASGIApp, latency: Histogram) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = (
                getattr(scope.get("route"), "path_format", None)
                or scope.get(ROUTE_KEY)
                or ("/outputs" if get_route_path(scope).startswith("/outputs/") else "other")
            )
            self.latency.labels(scope["method"], route, str(status)).observe(time.perf_counter() - started)


def install(app: FastAPI, settings: Settings) -> None:
    registry = CollectorRegistry()
    latency = Histogram(
        "tilewright_http_request_duration_seconds",
        "HTTP request latency.",
        ["method", "route", "status"],
        registry=registry,
    )
    registry.register(_JobCollector(settings))

    app.add_middleware(_Measure, latency=latency)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
