"""A private PostgreSQL cluster for the job-store tests: Debian's `postgresql` package (`make test`
installs it), `initdb` into a temporary folder, `pg_ctl start` on a free loopback port with its unix
socket in that folder, stopped and removed at the end of the session.

Nothing is mocked and nothing outside the temporary folder is touched: a test gets a fresh database
of its own (`CREATE DATABASE` takes some 50 ms), and the tests that take PostgreSQL away
(`stop()`/`start()`/`restart()`) bring the same cluster back on the same port.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from services import free_port
from tilewright.db import dispose_engine

SUPERUSER = "tilewright"


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: `apt-get install -y postgresql` (or `make test`)")
    return Path(found[-1]).parent  # the newest major version installed


class PostgresServer:
    """One cluster: `url(db)` is a SQLAlchemy URL, `database()` makes a fresh database, `stop/start/restart`."""

    def __init__(self) -> None:
        self.bin = _binaries()
        # initdb refuses to run as root. Running as root (CI's fresh Debian machine, this one), the cluster
        # belongs to the `postgres` user Debian's package creates for exactly this (no home-directory or
        # shell assumptions, unlike a login user; `nobody` would do too, but it may own files of other
        # services). As anyone else, the cluster is the current user's own.
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                pytest.fail("running as root needs the `postgres` user of Debian's postgresql package")
            self.user = "postgres"
        # not under pytest's tmp_path: /tmp/pytest-of-root is mode 0700, which the postgres user cannot enter
        self.folder = Path(tempfile.mkdtemp(prefix="tilewright-pg-"))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = free_port()
        self._run(self.bin / "initdb", "-D", self.data, "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync")

    def _run(self, *args: object) -> None:
        result = subprocess.run(
            [str(a) for a in args], user=self.user, capture_output=True, text=True, cwd=self.folder, timeout=120
        )
        if result.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise AssertionError(f"{' '.join(map(str, args))} failed: {result.stderr or result.stdout}\n{tail}")

    def start(self) -> None:
        # fsync off: a test cluster that loses its data on a power cut is fine, and start-up/commits are faster
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(self.bin / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop now: `fast` rolls back open transactions and closes every client connection."""
        self._run(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def execute(self, *statements: str) -> None:
        """Run statements as the superuser (CREATE DATABASE cannot run in a transaction: autocommit)."""
        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres") as conn:
            conn.autocommit = True
            for statement in statements:
                conn.execute(statement)  # type: ignore[arg-type]  # built from our own names, not input

    def database(self, owner: str = SUPERUSER) -> str:
        """A fresh empty database (no schema: `init_db` migrates it) -> its SQLAlchemy URL."""
        name = f"t{uuid.uuid4().hex[:16]}"
        self.execute(f'CREATE DATABASE {name} OWNER "{owner}"')
        return self.url(name, owner)

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's private PostgreSQL cluster (its `url()` is `postgresql+psycopg://...`)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database for this test -> its URL; this process's engine for it is closed afterwards."""
    url = postgres_server.database()
    yield url
    dispose_engine(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """Each test that takes this runs twice: on a fresh SQLite file, and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return request.getfixturevalue("pg_database")


def migration_head() -> str:
    """The newest revision of tilewright's migrations (one head: two would raise, as Alembic's upgrade would)."""
    from alembic.config import Config  # only the migration tests ask
    from alembic.script import ScriptDirectory  # (see above)

    from tilewright.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head
