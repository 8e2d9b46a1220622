"""What a URL setting must look like: `SCHEME://...` with a scheme its library accepts.

The settings declare their URL fields with these types, so a typo such as `localhost:6379` fails at
start-up in one line naming the setting, instead of deep inside Celery, SQLAlchemy or redis-py.
An error names the scheme, never the URL: it may hold a password.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

# Copies, not imports: kombu's and Celery's own tables (kombu.transport.TRANSPORT_ALIASES,
# celery.app.backends.BACKEND_ALIASES) cost 0.2-0.4 s to import, which every command would pay to read
# its settings. tests/test_config.py checks each copy against its library.
BROKER_SCHEMES = frozenset(
    "amqp amqps azureservicebus azurestoragequeues confluentkafka consul etcd filesystem gcpubsub kafka "
    "librabbitmq memory mongodb pgmq pyamqp pyro qpid redis rediss sentinel slmq sqla sqlalchemy sqs "
    "zookeeper".split()
)
RESULT_BACKEND_SCHEMES = frozenset(
    "arangodb azureblockblob cache cassandra consul cosmosdbsql couchbase couchdb database db disabled "
    "dynamodb elasticsearch file gs mongodb redis rediss riak rpc s3 sentinel".split()
)
CACHE_SCHEMES = frozenset({"redis", "rediss", "unix"})  # redis-py's Redis.from_url
DATABASE_DIALECTS = frozenset({"mariadb", "mssql", "mysql", "oracle", "postgresql", "sqlite"})  # SQLAlchemy's
HTTP_SCHEMES = frozenset({"http", "https"})

PATH_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@-]+)*")
"""A path prefix an app is mounted under: empty, or `/SEGMENT[/SEGMENT...]` without a trailing slash
(also what `X-Forwarded-Prefix` must look like to be taken)."""

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9.+-]*)://")


def database_dialect_known(dialect: str) -> bool:
    """SQLAlchemy's built-in dialects, or one a package registers (entry-point group `sqlalchemy.dialects`)."""
    if dialect in DATABASE_DIALECTS:
        return True
    # importlib.metadata costs ~90 ms of start-up; only a dialect SQLAlchemy does not ship needs it
    from importlib.metadata import entry_points

    return any(ep.name.split(".")[0] == dialect for ep in entry_points(group="sqlalchemy.dialects"))


def url_of(
    known: frozenset[str] | Callable[[str], bool],
    example: str,
    *,
    empty_ok: bool = False,
    needs_host: bool = False,
    separator: str | None = None,
) -> AfterValidator:
    """A check for a URL setting: each URL is `SCHEME[+DRIVER]://...` and `known` accepts SCHEME.

    `empty_ok`: the empty string means "the default" for this setting; `separator`: the setting may list
    several URLs (kombu's `;` fail-over list); `needs_host`: the URL must name a host (an HTTP endpoint).
    """
    accepts = known.__contains__ if isinstance(known, frozenset) else known
    listed = f" (one of {', '.join(sorted(known))})" if isinstance(known, frozenset) else ""

    def check(value: str) -> str:
        if not value and empty_ok:
            return value
        for url in value.split(separator) if separator else [value]:
            match = _SCHEME.match(url.strip())
            if match is None:
                raise ValueError(f"not a URL: expected SCHEME://..., e.g. {example}")
            scheme = match.group(1).lower().split("+")[0]
            if not accepts(scheme):
                raise ValueError(f"unknown scheme {scheme}://{listed}; e.g. {example}")
            if needs_host and not urlsplit(url.strip()).hostname:
                raise ValueError(f"the URL names no host; e.g. {example}")
        return value

    return AfterValidator(check)


BrokerUrl = Annotated[str, url_of(BROKER_SCHEMES, "redis://127.0.0.1:6379/0", empty_ok=True, separator=";")]
ResultBackendUrl = Annotated[str, url_of(RESULT_BACKEND_SCHEMES, "redis://127.0.0.1:6379/0", empty_ok=True)]
CacheUrl = Annotated[str, url_of(CACHE_SCHEMES, "redis://127.0.0.1:6379/1", empty_ok=True)]
DatabaseUrl = Annotated[str, url_of(database_dialect_known, "postgresql+psycopg://USER@HOST/DB", empty_ok=True)]
EndpointUrl = Annotated[str, url_of(HTTP_SCHEMES, "http://127.0.0.1:9000", empty_ok=True, needs_host=True)]


def _public_url(value: str) -> str:
    if not value:
        return value
    parts = urlsplit(value)
    example = "https://example.org/tiles"
    if parts.scheme not in HTTP_SCHEMES or not parts.hostname:
        raise ValueError(f"expected http(s)://HOST[:PORT][/PREFIX], e.g. {example}")
    if parts.query or parts.fragment or not PATH_PREFIX.fullmatch(parts.path.rstrip("/")):
        raise ValueError(f"expected a scheme, host and path prefix only (no query, no fragment), e.g. {example}")
    return value.rstrip("/")  # joined with paths that start with "/"


def _root_path(value: str | None) -> str | None:
    if value is None:  # not set: derived from public_url
        return None
    value = value.rstrip("/")
    if not PATH_PREFIX.fullmatch(value):
        raise ValueError("expected empty or /PREFIX (path segments, no query), e.g. /tiles")
    return value


def _trusted_proxies(value: list[str]) -> list[str]:
    # the forms uvicorn's forwarded_allow_ips takes (an address, a network, "*"); uvicorn itself would
    # silently treat a typo as a literal that never matches, so it is refused here
    for item in value:
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False) if "/" in item else ipaddress.ip_address(item)
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address, a network (10.0.0.0/8) or *") from None
    return value


PublicUrl = Annotated[str, AfterValidator(_public_url)]
RootPath = Annotated[str | None, AfterValidator(_root_path)]
TrustedProxies = Annotated[list[str], AfterValidator(_trusted_proxies)]
