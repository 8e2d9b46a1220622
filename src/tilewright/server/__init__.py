"""The HTTP server (`tilewright serve`): FastAPI app in `app.py`, routes by topic."""

from tilewright.server.app import create_app

__all__ = ["create_app"]
