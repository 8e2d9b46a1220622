"""Which store failures are worth another try, and the retry loop (jittered exponential backoff).

A transient failure is a timeout, a dropped connection or an HTTP 408/429/5xx, whichever SDK raised it
(adlfs/azure-core, s3fs/botocore and aiohttp name theirs differently, so their class names are listed);
a missing object, a refused permission or a tilewright error is final at once. What is final reaches the
user as a `storage.errors` type with a one-line reason, credentials masked.
"""

from __future__ import annotations

import errno
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from tilewright.errors import OutsideRootsError, TilewrightError, one_line
from tilewright.logs import redact
from tilewright.storage.errors import BlobNotFoundError, StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_ERRNO = frozenset(
    {
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EAGAIN,
    }
)
#: the SDKs' own transient errors (azure-core, aiohttp, botocore, urllib3), by class name: importing
#: each SDK to name its classes would load all three for a local-only run
TRANSIENT_NAMES = frozenset(
    {
        "ServiceRequestError",
        "ServiceResponseError",
        "ClientConnectorError",
        "ClientOSError",
        "ServerDisconnectedError",
        "ClientPayloadError",
        "ServerTimeoutError",
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ResponseStreamingError",
        "IncompleteReadError",
    }
)
_FINAL = (
    FileNotFoundError,
    PermissionError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    TilewrightError,
)
MAX_DELAY = 8.0  # seconds between two attempts at most


def is_transient(exc: BaseException) -> bool:
    """Whether another attempt may succeed (timeouts, resets, 408/429/5xx); False for what is final."""
    if isinstance(exc, _FINAL):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if isinstance(status, int) and status in TRANSIENT_STATUS:
        return True
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNO:
        return True
    return type(exc).__name__ in TRANSIENT_NAMES


def reason(exc: BaseException) -> str:
    """`errors.one_line`, with anything that looks like a credential masked."""
    return redact(one_line(exc))


def translate(exc: BaseException, url: str) -> BaseException:
    """The user-facing error for a failure (of the object at `url`) that is not worth retrying, or no longer."""
    if isinstance(exc, TilewrightError):
        return exc
    if isinstance(exc, FileNotFoundError):
        return BlobNotFoundError(f"{url} does not exist")
    if isinstance(exc, PermissionError):
        return OutsideRootsError(f"{url}: access denied ({reason(exc)})")
    return StorageError(f"{url}: {type(exc).__name__}: {reason(exc)}")


def with_retries(fn: Callable[[], T], *, retries: int, url: Callable[[], str], what: str) -> T:
    """Call `fn`, retrying transient failures `retries` times with jittered exponential backoff; what stays
    failed is raised `translate`d. `url` names the object in messages (called only when one is written)."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc) or attempt >= retries:
                raise translate(exc, url()) from exc
            attempt += 1
            delay = min(MAX_DELAY, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random())
            log.warning(
                "%s %s: %s: %s; retry %d/%d in %.1f s",
                what,
                url(),
                type(exc).__name__,
                reason(exc),
                attempt,
                retries,
                delay,
            )
            time.sleep(delay)
