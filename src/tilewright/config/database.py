"""Settings of the job database's connection pool (group "Server and jobs"): mixed into `Settings`.

Each process (a server, a worker, each pool process of the embedded executor) has its own pool per
database URL; docs/jobs.md says how to size these against the database role's connection limit.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from tilewright.config.groups import SERVER_AND_JOBS


class DatabaseSettings(BaseModel):
    database_pool_size: int = Field(
        5,
        ge=1,
        description="Connections each process keeps open to the job database.",
        json_schema_extra=SERVER_AND_JOBS,
    )
    database_max_overflow: int = Field(
        10,
        ge=0,
        description="Connections a process may open beyond `DATABASE_POOL_SIZE` at busy moments (closed when "
        "returned).",
        json_schema_extra=SERVER_AND_JOBS,
    )
    database_pool_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds a request waits for a free connection of the pool before it answers 503.",
        json_schema_extra=SERVER_AND_JOBS,
    )
