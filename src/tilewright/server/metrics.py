"""Prometheus metrics: request latency (measured here), jobs by state and job durations (read from the
database at scrape time, so they are right whatever process or machine ran the jobs)."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from tilewright.config import Settings
from tilewright.jobs import store

DURATION_BOUNDS = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]


class _JobCollector:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self):
        states = GaugeMetricFamily("tilewright_jobs", "Jobs in the database by state.", labels=["state"])
        for state, count in store.counts_by_state(self.settings).items():
            states.add_metric([state], count)
        yield states
        durations = HistogramMetricFamily("tilewright_job_duration_seconds",
                                          "Run time of finished jobs (last attempt).", labels=["kind"])
        buckets, sums = store.duration_buckets(self.settings, DURATION_BOUNDS)
        for kind, counts in buckets.items():
            pairs = [(str(b), c) for b, c in zip(DURATION_BOUNDS, counts[:-1])] + [("+Inf", counts[-1])]
            durations.add_metric([kind], pairs, sums[kind])
        yield durations


def install(app: FastAPI, settings: Settings) -> None:
    registry = CollectorRegistry()
    latency = Histogram("tilewright_http_request_duration_seconds", "HTTP request latency.",
                        ["method", "route", "status"], registry=registry)
    registry.register(_JobCollector(settings))

    @app.middleware("http")
    async def _measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", None) or ("/outputs" if request.url.path.startswith("/outputs/") else "other")
        latency.labels(request.method, path, str(response.status_code)).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
