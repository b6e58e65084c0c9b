"""`/api/v1/*`: the HTTP API 微签 calls (bearer `WEIQIAN_API_TOKEN`; docs/api.md).

Each resource has its own module exposing `routes(settings) -> list[Route]`: org.py (the
directory and its change feed), notifications.py, tickets.py, jssdk.py; common.py holds what
they share (authentication, JSON bodies, errors); openapi.py describes them all (OpenAPI 3.1,
served without authentication at /api/v1/openapi.json)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import jssdk, notifications, openapi, org, tickets

if TYPE_CHECKING:
    from bot.registry import Registry


def contribute(app: Registry) -> None:
    for resource in (org, notifications, tickets, jssdk, openapi):
        app.routes.extend(resource.routes(app.settings))
