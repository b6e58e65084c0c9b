"""ASGI in front of the whole app (what `wqbot serve` serves): GET and POST on the callback URLs
go straight to their CallbackEndpoint; everything else, lifespan included, goes to the app.

Starlette's middleware and its walk over every route cost a callback CPU (bench/README.md) and
give it nothing: the endpoint answers every outcome itself, and an unexpected error still becomes a 500
(uvicorn's). Middleware added to the app does not see these two URLs."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .endpoint import CallbackEndpoint


class CallbackFastPath:
    def __init__(self, app: ASGIApp):
        self.app = app
        self.endpoints = {
            r.path: r.endpoint
            for r in getattr(app, "routes", ())
            if isinstance(r, Route)
            and isinstance(r.endpoint, CallbackEndpoint)
            and "{" not in r.path
            and {"GET", "POST"} <= (r.methods or set())
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path") and scope["method"] in ("GET", "POST"):
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                return await endpoint(scope, receive, send)
        await self.app(scope, receive, send)

    def __getattr__(self, name: str) -> Any:  # app.state, app.routes… of the app behind
        return getattr(self.app, name)
