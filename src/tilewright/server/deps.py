"""What routes share: the settings and executor of this app, and the write-token check."""

from __future__ import annotations

import secrets

from fastapi import Request

from tilewright.config import Settings
from tilewright.jobs.executors import Executor
from tilewright.server.errors import ApiError


def settings_of(request: Request) -> Settings:
    return request.app.state.settings


def executor_of(request: Request) -> Executor:
    return request.app.state.executor


def require_token(request: Request) -> None:
    """When `api_token` is set, writes need `Authorization: Bearer <token>` (compared in constant time)."""
    token = settings_of(request).api_token
    if token is None or not token.get_secret_value():
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(
        given.strip().encode(), token.get_secret_value().encode()
    ):
        raise ApiError(
            401,
            "this endpoint needs 'Authorization: Bearer <token>' (TILEWRIGHT_API_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
