"""Settings of the job database: its URL and each process's connection pool (group "Job database"), mixed
into `Settings`.

Each process (a server, a worker, each pool process of the embedded executor) has its own pool per
database URL; docs/jobs.md says how to size these against the database role's connection limit.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from tilewright.config.groups import JOB_DATABASE
from tilewright.config.urls import DatabaseUrl


class DatabaseSettings(BaseModel):
    database_url: DatabaseUrl = Field(
        "",
        description="SQLAlchemy URL of the job database (empty: SQLite file "
        "`DATA_DIR/tilewright.db`; `postgresql+psycopg://...` for PostgreSQL, with `pip install "
        "'tilewright[postgres]'`).",
        json_schema_extra=JOB_DATABASE,
    )
    database_pool_size: int = Field(
        5,
        ge=1,
        description="Connections each process keeps open to the job database.",
        json_schema_extra=JOB_DATABASE,
    )
    database_max_overflow: int = Field(
        10,
        ge=0,
        description="Connections a process may open beyond `DATABASE_POOL_SIZE` at busy moments (closed when "
        "returned).",
        json_schema_extra=JOB_DATABASE,
    )
    database_pool_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a request waits for a free connection of the pool before it answers 503.",
        json_schema_extra=JOB_DATABASE,
    )
