"""The Celery broker seen from the server: is it reachable, and the error when it is not.

Shared by the executors (start-up, fallback, going back to Celery) and the Celery executor's monitor;
kombu is imported only when a broker is actually asked about.
"""

from __future__ import annotations

from tilewright.errors import TilewrightError
from tilewright.logs import redact


class BrokerUnavailableError(TilewrightError):
    """The Celery broker cannot be reached and falling back to embedded is switched off."""

    exit_code = 1
    http_status = 503


def broker_reachable(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """(True, "") when a connection to the broker opens within about `timeout` seconds, else (False, why)."""
    from kombu import Connection  # Celery's transport: loaded only when a broker is configured

    try:
        with Connection(url, connect_timeout=timeout, transport_options={"socket_timeout": timeout}) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout, interval_start=0, interval_step=0)
        return True, ""
    except Exception as exc:  # noqa: BLE001 - any failure means unreachable
        return False, f"broker {redact(url)} unreachable: {type(exc).__name__}: {exc}"
