"""Settings of the routes that answer the requests of the systems tilewright replaces (docs/migrating.md):
the Azure Functions `/api/resize` and py-image-server's `/items/` (group "Compatibility"). Mixed into
`Settings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from tilewright.config.groups import COMPATIBILITY


class CompatSettings(BaseModel):
    items_output_root: Path | None = Field(
        None,
        description="The only folder `POST /items/` (py-image-server's requests) writes into: an absolute "
        "output path must lie inside it (else 400), a relative one is taken from it "
        "(default `OUTPUT_ROOT/items`).",
        json_schema_extra=COMPATIBILITY,
    )
    azure_resize_max_bytes: int = Field(
        100 * 2**20,
        gt=0,
        # the Azure Functions host refuses bodies over 100 MiB by default (FUNCTIONS_REQUEST_BODY_SIZE_LIMIT)
        description="Largest image body `POST /api/resize` (the Azure Functions resize) accepts, in bytes "
        "(413 over it); 100 MiB, the Functions host's own default.",
        json_schema_extra=COMPATIBILITY,
    )
