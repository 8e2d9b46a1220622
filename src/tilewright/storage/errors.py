"""The errors every store raises: the store failed (retry later), the object is missing, the store is not
configured. A name outside what is configured is `tilewright.errors.OutsideRootsError` (403), as for paths."""

from __future__ import annotations

from tilewright.errors import InputError, TilewrightError


class StorageError(TilewrightError):
    """The store failed (unreachable, throttling, 5xx) after every retry: worth trying the job again later."""

    exit_code = 1
    http_status = 503


class BlobNotFoundError(InputError):
    """The named object does not exist (deleted after its event, or a wrong URL)."""

    http_status = 404


class NotConfiguredError(TilewrightError):
    """The store a URL names has no settings on this server (no account, no endpoint or credentials).

    503, not 400: the request is right and the server is not, so an event sender that retries on 5xx
    (Event Grid, S3 webhooks) delivers it again once the operator has configured the store."""

    exit_code = 2
    http_status = 503
