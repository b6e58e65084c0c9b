"""The one huey instance. `QUEUE_URL` picks its storage: `sqlite:///…` (embedded default, one
process), `redis://…` (several workers), `memory://` (tests)."""

from __future__ import annotations

import os

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey

from settings import SettingsError, get_settings


def make_huey(queue_url: str, name: str = "wqbot") -> Huey:
    if queue_url.startswith(("redis://", "rediss://")):
        return RedisHuey(name, url=queue_url, utc=True)
    if queue_url.startswith("memory://"):
        return MemoryHuey(name, utc=True)
    path = queue_url[len("sqlite:///") :]
    return SqliteHuey(name, filename=path, utc=True, timeout=10)


def _queue_url() -> str:
    # The queue is chosen before any settings are needed for work, so importing this module
    # must not require every WeCom secret: read QUEUE_URL alone if full settings are invalid.
    try:
        return get_settings().queue_url
    except SettingsError:
        return os.environ.get("QUEUE_URL", "sqlite:///wqbot-queue.db")


huey = make_huey(_queue_url(), name=os.environ.get("WQBOT_QUEUE_NAME", "wqbot"))
