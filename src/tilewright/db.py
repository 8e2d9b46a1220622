"""The job database: one SQLAlchemy engine per process and URL, schema kept by Alembic.

Why Alembic even for SQLite: the same migrations serve a laptop's SQLite file and a
shared PostgreSQL, and `tilewright serve`/`worker` upgrade the schema at start, so
an old data directory keeps working after an upgrade of tilewright.

A database that cannot be reached (down, restarting, its role out of connections) or a
pool with no free connection raises `DatabaseUnavailableError` from `session_scope`: a
503 naming the database, and the error the job runner retries its final write on.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from tilewright.config import Settings
from tilewright.config.database import DatabaseSettings
from tilewright.errors import TilewrightError, one_line

_engines: dict[tuple[int, str], Engine] = {}
_lock = threading.Lock()
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CONNECT_TIMEOUT = 10  # seconds: a host that drops packets answers 503 after this, not after the OS's minutes


class DatabaseUnavailableError(TilewrightError):
    """The job database cannot be reached, or every connection of the pool is busy: try again later."""

    exit_code = 1
    http_status = 503


def describe(url: str) -> str:
    """The database a URL names, without its password (for errors and logs)."""
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets the server read while workers write progress; busy_timeout makes writers queue, not fail
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def get_engine(url: str, pool: DatabaseSettings | None = None) -> Engine:
    """The engine for `url` in this process (a forked child gets its own, never its parent's sockets), its pool
    sized by the first caller's settings (`session_scope` passes them; the defaults otherwise)."""
    key = (os.getpid(), url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            pool = pool or DatabaseSettings()
            sizes = {
                "pool_size": pool.database_pool_size,
                "max_overflow": pool.database_max_overflow,
                "pool_timeout": pool.database_pool_timeout,
            }
            if url.startswith("sqlite"):
                engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **sizes)
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                # pre-ping: a connection the server closed (a restart, an idle timeout) is replaced at checkout
                # instead of failing the request that drew it
                connect_args = {"connect_timeout": CONNECT_TIMEOUT} if url.startswith("postgresql") else {}
                engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args, **sizes)
            _engines[key] = engine
        return engine


def _unavailable(exc: BaseException) -> bool:
    """Whether a database error means "cannot talk to the database now" rather than a bad statement."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _unavailable_error(settings: Settings, exc: BaseException) -> DatabaseUnavailableError:
    reason = one_line(getattr(exc, "orig", None) or exc, 300)  # the driver's words, without SQLAlchemy's links
    return DatabaseUnavailableError(f"job database {describe(settings.resolved_database_url())} unavailable: {reason}")


@contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session committed on success, rolled back on error; `DatabaseUnavailableError` when the database is
    down or the pool exhausted."""
    factory = sessionmaker(get_engine(settings.resolved_database_url(), settings), expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException as exc:
        try:
            session.rollback()
        except DBAPIError:  # the connection is gone already: nothing to roll back
            pass
        if _unavailable(exc):
            raise _unavailable_error(settings, exc) from exc
        raise
    finally:
        session.close()


def init_db(settings: Settings) -> None:
    """Create the data folders and bring the schema to the newest migration (safe to call from many processes,
    on many hosts: PostgreSQL serialises them with an advisory lock in `migrations/env.py`)."""
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
    try:
        if url.startswith("postgresql"):  # the database's own lock covers every host, whatever its data folder
            command.upgrade(config, "head")
            return
        # SQLite (one host by nature) and the others: several processes may start at once (server + workers) on
        # one data folder; a file lock there serialises the upgrade
        lock_path = settings.data_dir.resolve() / ".migrate.lock"
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                command.upgrade(config, "head")
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    except DBAPIError as exc:
        if _unavailable(exc):
            raise _unavailable_error(settings, exc) from exc
        raise


def dispose_engine(url: str) -> None:
    """Close this process's pool for `url` (its connections) and forget it."""
    with _lock:
        engine = _engines.pop((os.getpid(), url), None)
    if engine is not None:
        engine.dispose()


def dispose_engines() -> None:
    """Forget inherited engines (call in a freshly forked worker)."""
    with _lock:
        for pid, url in list(_engines):
            if pid != os.getpid():
                _engines.pop((pid, url))
        for engine in _engines.values():
            engine.dispose(close=False)
