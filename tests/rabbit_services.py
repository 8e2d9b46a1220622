"""A private RabbitMQ node for the Celery tests: Debian's rabbitmq-server (3.10), started by the test set-up.

One node per session (Erlang takes seconds to start): its own node name, free AMQP and distribution
ports on loopback, its database, logs, config and Erlang cookie in a temporary folder (HOME points
there, so the cookie is private and `rabbitmqctl` finds it). The broker's `consumer_timeout` is short
(`CONSUMER_TIMEOUT_MS`, checked every second): every RabbitMQ test runs jobs longer than it, which is
the case that once made workers exit for good. `stop_app()`/`start_app()` stop and start the broker
(clients see the port close and every connection drop; durable queues and persistent messages stay,
as through a restart). `vhost()` makes a fresh virtual host, for a test that needs an empty broker.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import free_port, wait_until

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # not /usr/sbin's wrapper: that one su's to `rabbitmq`
CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
CONSUMER_TIMEOUT_MS = 3000


class RabbitServer:
    """A RabbitMQ node of its own; `url` is its default vhost as guest (allowed from loopback only)."""

    def __init__(self, folder: Path) -> None:
        if not SERVER.exists():
            pytest.fail("rabbitmq-server is not installed: `apt-get install -y rabbitmq-server` (or `make test`)")
        self.folder = folder
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"tw-test-{self.port}@localhost"
        self.url = self.url_of("/")
        (folder / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            f"consumer_timeout = {CONSUMER_TIMEOUT_MS}\n"
            "log.console = false\n"
        )
        # the broker looks for expired deliveries every channel tick (60 s by default): every second here
        (folder / "advanced.config").write_text("[{rabbit, [{channel_tick_interval, 1000}]}].\n")
        (folder / "enabled_plugins").write_text("[].\n")
        (folder / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's
        self.env = {
            **os.environ,
            "HOME": str(folder),  # the Erlang cookie: $HOME/.erlang.cookie, made at the first start
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(folder / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(folder / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(folder / "rabbitmq.pid"),
        }
        self.proc: subprocess.Popen | None = None

    def url_of(self, vhost: str) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{vhost}"  # vhost "/": .../ + "/"

    def accepts(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(SERVER)],
            env=self.env,
            cwd=self.folder,
            stdout=open(self.folder / "server.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(lambda: self.proc.poll() is not None or self.accepts(), 120, "rabbitmq-server to listen")
            if self.proc.poll() is not None:
                raise AssertionError(f"rabbitmq-server exited: {self.log()}")
            self.ctl("await_startup")
        except BaseException:
            self.kill()
            raise

    def ctl(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [str(CTL), "-n", self.node, *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise AssertionError(f"rabbitmqctl {' '.join(args)}: {done.stdout}{done.stderr}")
        return done.stdout

    def vhost(self) -> str:
        """A new empty virtual host, guest allowed; -> its URL."""
        name = f"t{uuid.uuid4().hex[:10]}"
        self.ctl("add_vhost", name)
        self.ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        return self.url_of(name)

    def stop_app(self) -> None:
        """The broker away (port closed, every connection dropped); the Erlang node stays, so it comes back fast."""
        self.ctl("stop_app")

    def start_app(self) -> None:
        """The broker back on the same port, with its durable queues and persistent messages."""
        self.ctl("start_app")
        wait_until(self.accepts, 60, "rabbitmq to listen again")

    def log(self) -> str:
        text = (self.folder / "server.log").read_text(errors="replace") if (self.folder / "server.log").exists() else ""
        return text[-3000:]

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the script and its Erlang VM: the session we started
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.ctl("stop", timeout=30)
            self.proc.wait(30)
        except (AssertionError, subprocess.TimeoutExpired):
            self.kill()


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory) -> Iterator[RabbitServer]:
    """The session's RabbitMQ node (for tests that stop and start it, or make vhosts)."""
    folder = tmp_path_factory.mktemp("rabbitmq")
    server = RabbitServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder / "mnesia", ignore_errors=True)


@pytest.fixture(scope="session")
def rabbitmq_server(rabbitmq) -> str:
    """The URL (`amqp://guest:guest@127.0.0.1:PORT/`) of a private RabbitMQ node on a free loopback port."""
    return rabbitmq.url
