"""Alembic environment: the URL comes from `tilewright.db.init_db`, never from an ini file.

On PostgreSQL the upgrade runs under a transaction-level advisory lock: servers and workers of
several hosts (each with its own data folder, so no shared file lock) starting at once on one fresh
database take turns; the second finds the schema at head and does nothing, instead of failing
with `UniqueViolation ... alembic_version`.
"""

from alembic import context
from sqlalchemy import create_engine, pool, text

from tilewright.jobs.models import Base

MIGRATION_LOCK = 0x7469_6C65_7772_6967  # "tilewrig": the advisory-lock key every tilewright process agrees on

url = context.config.attributes.get("url") or context.config.get_main_option("sqlalchemy.url")
if not url:  # init_db always passes one; a bare `alembic` run without it has nothing to migrate
    raise RuntimeError("tilewright migrations need a database URL (tilewright.db.init_db passes it)")
url = str(url)

if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=Base.metadata, render_as_batch=url.startswith("sqlite")
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # held until this transaction commits: Alembic reads the current version only after it
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            context.run_migrations()
    engine.dispose()
