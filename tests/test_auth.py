"""With `api_token` set, every route that changes state refuses a request without it (issue 13).

The routes are enumerated from the app itself, so a route added later cannot be forgotten: any
POST, PUT, PATCH or DELETE answers 401 (JSON, `WWW-Authenticate: Bearer`) before it reads the body
or touches anything, with no token and with a wrong one. The event routes are guarded by the events
key instead (their senders, Event Grid and S3, cannot send a bearer token): they answer 401 without it.
"""

from __future__ import annotations

import re

from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from services import assert_error
from tilewright.config import Settings
from tilewright.server import create_app

WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _writes(app) -> list[tuple[str, str]]:
    found = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute) and context.path_format:
            path = re.sub(r"\{[^}]+\}", "0" * 32, context.path_format)  # any id: refused before it is looked up
            found += [(method, path) for method in sorted((context.methods or set()) & WRITES)]
    return found


def test_every_state_changing_route_needs_the_token(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", api_token="s3cret", events_key="k3y")
    app = create_app(settings)
    routes = _writes(app)
    assert ("POST", "/jobs") in routes and ("DELETE", "/images/" + "0" * 32) in routes  # the enumeration works
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, path in routes:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                answer = client.request(method, path, headers=headers, content=b"{}")
                if path.startswith("/events/"):
                    assert_error(answer, 401, "events key")
                else:
                    assert_error(answer, 401, "Bearer")
                    assert answer.headers["www-authenticate"] == "Bearer", (method, path)
                assert "s3cret" not in answer.text and "k3y" not in answer.text
