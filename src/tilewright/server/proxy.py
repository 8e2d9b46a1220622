"""Behind a reverse proxy: the path prefix, the forwarded headers of trusted proxies, the URLs the server writes.

`ProxyScope`, the outermost ASGI middleware (`create_app`), settles the request's scope before anything
reads it:

- the configured root path (`Settings.resolved_root_path`) becomes `scope["root_path"]` and is put in
  front of `scope["path"]`: the ASGI convention uvicorn's `root_path` follows (the proxy strips the
  prefix, Starlette's router takes it off again). When the server already did it (`tilewright serve`
  passes the setting to uvicorn), nothing changes;
- only when the peer is a trusted proxy (`forwarded_allow_ips`, the same list and the same matching
  as uvicorn's): RFC 7239 `Forwarded` (`proto`, `host`, `for`), `X-Forwarded-Host` and
  `X-Forwarded-Prefix`, then uvicorn's own `ProxyHeadersMiddleware` for `X-Forwarded-Proto` and
  `X-Forwarded-For`. From anyone else these headers change nothing. A proxy's header may hold a list
  (a chain of proxies): the last value, written by the proxy we trust, is taken.

`public_base` is where absolute URLs start (`public_url` when set, so a forged `Host` changes nothing;
else the request's, as settled here); `link` puts the root path in front of a path, for `Location`
headers and the links of documents.
"""

from __future__ import annotations

import ipaddress
import re

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tilewright.config import Settings
from tilewright.config.urls import PATH_PREFIX

_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")
_FORWARDED_FOR = "tilewright.forwarded_for"  # the scope key of the client a trusted `Forwarded` names
_PAIR = re.compile(r'\s*([A-Za-z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,"\s]*)\s*([;,]|$)')


class ProxyScope:
    """ASGI middleware: the root path, and the forwarded headers of trusted proxies, into the scope."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.root_path = settings.resolved_root_path()
        self.inner: ASGIApp = app
        self.proxies: ProxyHeadersMiddleware | None = None
        if settings.forwarded_allow_ips:
            # uvicorn's types name the same ASGI callables differently from Starlette's
            self.proxies = ProxyHeadersMiddleware(self._then, trusted_hosts=settings.forwarded_allow_ips)  # type: ignore[arg-type]
            self.inner = self.proxies  # type: ignore[assignment]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            # in place, as uvicorn's middleware does: its access log then shows what the app saw
            if self.root_path and not scope.get("root_path"):
                _mount(scope, self.root_path)
            client = scope.get("client")
            if self.proxies is not None and client and client[0] in self.proxies.trusted_hosts:
                _forwarded(scope)
        await self.inner(scope, receive, send)

    async def _then(self, scope: Scope, receive: Receive, send: Send) -> None:
        """After uvicorn's middleware (which trusts by the peer, so it must see the peer): `Forwarded: for=`."""
        client = scope.pop(_FORWARDED_FOR, None)
        if client is not None:
            scope["client"] = client
        await self.app(scope, receive, send)


def _mount(scope: Scope, prefix: str) -> None:
    """Make `prefix` the scope's root path, in front of its path (replacing the root path it had)."""
    old = scope.get("root_path", "")
    path: str = scope["path"]
    scope["path"] = prefix + (path[len(old) :] if old and path.startswith(old) else path)
    raw: bytes | None = scope.get("raw_path")
    if raw is not None:
        scope["raw_path"] = prefix.encode() + (raw[len(old) :] if old and raw.startswith(old.encode()) else raw)
    scope["root_path"] = prefix


def _last(scope: Scope, name: bytes) -> str | None:
    """The last value of a header a proxy may have listed several values in (several headers, or commas)."""
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
    last = ",".join(values).split(",")[-1].strip()
    return last or None


def forwarded_element(value: str) -> dict[str, str]:
    """The last element of an RFC 7239 `Forwarded` header as {parameter: value}; {} if it does not parse."""
    element: dict[str, str] = {}
    pos = 0
    while pos < len(value):
        found = _PAIR.match(value, pos)
        if found is None or found.end() == pos:
            return {}
        key, raw, separator = found.groups()
        element[key.lower()] = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') else raw
        pos = found.end()
        if separator == "," and pos < len(value):
            element = {}  # the next element (another proxy's) follows
    return element


def _forwarded(scope: Scope) -> None:
    """What a trusted proxy says: scheme, host and client (`Forwarded`), host, prefix (`X-Forwarded-*`)."""
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == b"forwarded"]
    element = forwarded_element(",".join(values)) if values else {}
    proto = element.get("proto", "").lower()
    if proto in ("http", "https"):
        scope["scheme"] = proto if scope["type"] == "http" else proto.replace("http", "ws")
    host = _last(scope, b"x-forwarded-host") or element.get("host")
    if host and _HOST.fullmatch(host):
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"host"] + [(b"host", host.encode())]
    client = element.get("for", "")
    address, _, port = client.removeprefix("[").partition("]:") if client.startswith("[") else client.partition(":")
    try:
        scope[_FORWARDED_FOR] = (str(ipaddress.ip_address(address.rstrip("]"))), int(port) if port.isdigit() else 0)
    except ValueError:
        pass  # "unknown", an obfuscated name: the peer stays the client
    prefix = (_last(scope, b"x-forwarded-prefix") or "").rstrip("/")
    if prefix and PATH_PREFIX.fullmatch(prefix):
        _mount(scope, prefix)


def public_base(settings: Settings, request: Request) -> str:
    """Scheme, host and path prefix of absolute URLs, without a trailing slash."""
    return settings.public_url or str(request.base_url).rstrip("/")


def link(request: Request, path: str) -> str:
    """`path` (starting with /) under the app's root path: what a client behind the proxy must ask for."""
    return request.base_url.path.rstrip("/") + path
