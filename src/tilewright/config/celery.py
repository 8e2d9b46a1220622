"""Settings of the Celery executor (group "Celery"): broker, result backend, and how the server recovers
lost jobs. Mixed into `Settings`."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tilewright.config.groups import CELERY
from tilewright.config.urls import BrokerUrl, ResultBackendUrl


class CelerySettings(BaseModel):
    broker_url: BrokerUrl = Field(
        "redis://127.0.0.1:6379/0",
        description="Celery broker URL: Redis (`redis://HOST:6379/0`) or RabbitMQ (`amqp://USER:PASSWORD@HOST:5672//`).",
        json_schema_extra=CELERY,
    )
    result_backend: ResultBackendUrl = Field(
        "",
        description="Celery result backend URL; empty: none (the job record in the job database is the result, "
        "so nothing needs one). Checked when the server or a worker starts.",
        json_schema_extra=CELERY,
    )
    broker_fallback: bool = Field(
        True,
        description="If the broker is unreachable when the server starts, warn and run jobs embedded (and go "
        "back to Celery once the broker answers) instead of refusing to start.",
        json_schema_extra=CELERY,
    )
    celery_visibility_timeout: int = Field(
        3600,
        ge=1,
        description="Redis broker: seconds before a message taken by a worker but not yet started (a worker "
        "that died at that moment) is delivered again. Running jobs are recovered by the server, not by this.",
        json_schema_extra=CELERY,
    )
    celery_recovery_interval: float = Field(
        5.0,
        gt=0,
        le=300,
        description="How often the server checks the broker and pings the workers (what `/readyz` says, at "
        "most this old), requeues running jobs whose worker died and sends lost jobs again.",
        json_schema_extra=CELERY,
    )
    celery_resend_seconds: float = Field(
        60.0,
        gt=0,
        description="A job queued this long without starting is sent to the broker again (a message lost by a "
        "broker restart or outage); each further resend of the same job waits twice as long (at most an hour).",
        json_schema_extra=CELERY,
    )
