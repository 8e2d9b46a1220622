"""Settings of the event sources, the watcher and the Functions adapter (group "Storage and events"): mixed
into `Settings`. Which blobs make jobs (`event_sources`, `event_suffixes`) and what a job makes of them
(`event_recipe`: a Deep Zoom pyramid, or a recipe's outputs at its blob layout)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, SecretStr

from tilewright.config.groups import STORAGE_AND_EVENTS


class EventSettings(BaseModel):
    event_sources: list[dict[str, Any]] = Field(
        [],
        description="Filters of event and watch sources, JSON list of "
        '`{"container": ..., "prefix": ..., "suffixes": [...]}` '
        "(container = bucket); empty: any container.",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    event_suffixes: list[str] = Field(
        [],
        description="Blob name endings that make a job when a source names none; empty: every suffix "
        "a reader declares (every format tilewright reads: `.svs`, `.ndpi`, `.jpg`, `.png`, plug-ins' ...).",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    event_recipe: str = Field(
        "",
        description="What an event (or `watch`) makes of a blob: empty, a Deep Zoom pyramid at "
        "`TILEWRIGHT_OUTPUT_TEMPLATE`; a recipe name (e.g. `azure-functions`), that recipe's outputs at "
        "the blob names its `blob` layout gives.",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    events_key: SecretStr | None = Field(
        None,
        description="If set, `/events/*` need it as `?key=` or the `aeg-sas-key` (or `x-tilewright-key`) header.",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    webhook_allowed_origins: list[str] = Field(
        [],
        description="CloudEvents webhook origins allowed by the OPTIONS handshake (empty: any).",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    watch_interval_seconds: float = Field(
        30.0,
        gt=0,
        description="Seconds between two listings of `tilewright watch`.",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    functions_run_inline: bool = Field(
        True,
        description="Azure Functions adapter: run the job inside the "
        "function invocation (true) or only submit it to the job database (false).",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
