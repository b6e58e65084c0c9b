"""`/api/v1/*`: the HTTP API 微签 calls (bearer `WEIQIAN_API_TOKEN`).

Each resource has its own module exposing `routes(settings) -> list[Route]`:
org.py (directory read API), notifications.py, tickets.py, jssdk.py."""

from __future__ import annotations

import importlib

RESOURCES = ("org", "notifications", "tickets", "jssdk")


def routes(settings) -> list:
    out = []
    for name in RESOURCES:
        try:
            m = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            continue
        out.extend(m.routes(settings))
    return out
