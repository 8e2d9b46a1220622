"""The errors every store raises: the store failed (retry later), the object is missing, the name is forbidden."""

from __future__ import annotations

from tilewright.errors import InputError, TilewrightError


class StorageError(TilewrightError):
    """The store failed (unreachable, throttling, 5xx) after every retry: worth trying the job again later."""

    exit_code = 1
    http_status = 503


class BlobNotFoundError(InputError):
    """The named object does not exist (deleted after its event, or a wrong URL)."""

    http_status = 404


class ForbiddenSourceError(InputError):
    """A URL or path outside the configured accounts, buckets, containers or roots."""

    http_status = 403
