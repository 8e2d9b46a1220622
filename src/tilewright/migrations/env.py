"""Alembic environment: the URL comes from `tilewright.db.init_db`, never from an ini file."""

from alembic import context
from sqlalchemy import create_engine, pool

from tilewright.jobs.models import Base

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
            context.run_migrations()
    engine.dispose()
