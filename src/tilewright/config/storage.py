"""Settings of the stores (group "Storage and events"; the event sources' are in `config/events.py`): mixed into
`Settings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr

from tilewright.config.groups import STORAGE_AND_EVENTS
from tilewright.config.urls import EndpointUrl


class StorageSettings(BaseModel):
    storage_root: Path | None = Field(
        None,
        description="Root of the local store (`file://` and plain paths in "
        "`watch` and blob jobs; default `DATA_DIR/storage`).",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    output_store: str = Field(
        "",
        description="Where blob jobs publish (`az://`, `s3://BUCKET/PREFIX`, a local "
        "folder); empty: the source blob's own store (account or bucket). When it names a "
        "container or bucket, uploads are also published there (`COLLECTION/IMAGE_ID/`) "
        "and served from it, and import jobs (`COLLECTION/JOB_ID/`).",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    output_template: str = Field(
        "{container}/web-slides-dzi-output/{stem}/",
        description="Output folder of a "
        "blob job inside the output store; fields `{container}` (or bucket), `{path}`, "
        "`{dir}`, `{name}`, `{stem}`, `{etag}`.",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    storage_connections: int = Field(
        16,
        ge=1,
        le=256,
        description="Concurrent connections uploading a pyramid's tiles.",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    storage_retries: int = Field(
        4,
        ge=0,
        le=20,
        description="Retries of a storage request failing for a "
        "transient reason (timeouts, 5xx, throttling), with exponential backoff.",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    storage_chunk_bytes: int = Field(
        4 * 2**20,
        ge=2**16,
        description="Chunk size of streamed downloads and uploads (memory per transfer is a few chunks).",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    azure_connection_string: SecretStr | None = Field(
        None,
        description="Azure Storage connection string (Azurite: `UseDevelopmentStorage=true` style or full).",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    azure_account_name: str = Field(
        "",
        description="Azure Storage account (with a key, SAS or managed identity instead of a connection string).",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    azure_account_key: SecretStr | None = Field(
        None, description="Azure Storage account key.", json_schema_extra=STORAGE_AND_EVENTS
    )
    azure_sas_token: SecretStr | None = Field(
        None, description="Azure Storage SAS token (account or container).", json_schema_extra=STORAGE_AND_EVENTS
    )
    azure_use_identity: bool = Field(
        False,
        description="Authenticate with azure-identity's "
        "DefaultAzureCredential (managed identity, workload identity, az login).",
        json_schema_extra=STORAGE_AND_EVENTS,
    )
    s3_endpoint_url: EndpointUrl = Field(
        "", description="S3-compatible endpoint (MinIO, moto, Ceph); empty: AWS.", json_schema_extra=STORAGE_AND_EVENTS
    )
    s3_region: str = Field(
        "", description="S3 region (empty: the SDK's default).", json_schema_extra=STORAGE_AND_EVENTS
    )
    s3_access_key_id: str = Field(
        "", description="S3 access key id (empty: the SDK's credential chain).", json_schema_extra=STORAGE_AND_EVENTS
    )
    s3_secret_access_key: SecretStr | None = Field(
        None, description="S3 secret access key.", json_schema_extra=STORAGE_AND_EVENTS
    )
