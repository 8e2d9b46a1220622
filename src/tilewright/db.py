"""The job database: one SQLAlchemy engine per process and URL, schema kept by Alembic.

Why Alembic even for SQLite: the same migrations serve a laptop's SQLite file and a
shared PostgreSQL, and `tilewright serve`/`worker` upgrade the schema at start, so
an old data directory keeps working after an upgrade of tilewright.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from tilewright.config import Settings

_engines: dict[tuple[int, str], Engine] = {}
_lock = threading.Lock()
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets the server read while workers write progress; busy_timeout makes writers queue, not fail
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def get_engine(url: str) -> Engine:
    """The engine for `url` in this process (a forked child gets its own, never its parent's sockets)."""
    key = (os.getpid(), url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            if url.startswith("sqlite"):
                engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            _engines[key] = engine
        return engine


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session committed on success, rolled back on error."""
    factory = sessionmaker(get_engine(settings.resolved_database_url()), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def init_db(settings: Settings) -> None:
    """Create the data folders and bring the schema to the newest migration (safe to call from many processes)."""
    # Alembic (~0.4 s) only where the schema is upgraded: every job process and CLI command imports this module
    from alembic import command
    from alembic.config import Config  # (see above)

    url = settings.resolved_database_url()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["url"] = url
    # several processes may start at once (server + workers): serialise the upgrade with a file lock
    lock_path = settings.data_dir.resolve() / ".migrate.lock"
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            command.upgrade(config, "head")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def dispose_engines() -> None:
    """Forget inherited engines (call in a freshly forked worker)."""
    with _lock:
        for pid, url in list(_engines):
            if pid != os.getpid():
                _engines.pop((pid, url))
        for engine in _engines.values():
            engine.dispose(close=False)
