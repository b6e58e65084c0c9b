"""The wqbot application: the capabilities, each contributing its part when the app is built.

app = create_app(settings)      # the ASGI app (`wqbot serve` puts bot/server's layers in front)
registry = build(settings)      # what a worker needs: the queue tasks and periodic jobs
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import AsyncIterator

from starlette.applications import Starlette

from bot import api, auth, callback, notify, ops, queue, sync, workbench
from bot.handlers import cards, chat, contacts
from bot.registry import Registry
from settings import Settings, get_settings
from store import clock
from store import init_store as open_store

CAPABILITIES: tuple[Callable[[Registry], None], ...] = (
    queue.contribute,  # the outbox sweeper, delivery-key pruning
    ops.contribute,  # /healthz, /readyz, /metrics, /admin; errors for the console, 立即同步
    sync.contribute,  # directory sync: fetches, the periodic reconciliation
    contacts.contribute,  # change_contact callbacks
    notify.contribute,  # push, card updates, webhooks, the deadline sweep, reminders, the digest
    workbench.contribute,  # the 工作台 tile: counts kept current every minute
    cards.contribute,  # 同意/拒绝 taps
    auth.contribute,  # /oauth/h5, /wx/qrlogin, /wx/login, /login
    api.contribute,  # /api/v1/*
    chat.contribute,  # menu clicks, text, opening the app
)


# Periodic jobs that act on what time it is: after a jump of the emulator's clock (SIM_CLOCK_URL)
# they run at once rather than at the next minute, so the demo shows them without waiting.
CLOCK_JOBS = ("notify.sweep", "notify.remind", "notify.digest", "workbench.refresh")


def build(settings: Settings) -> Registry:
    registry = Registry(settings)
    for contribute in CAPABILITIES:
        contribute(registry)
    if settings.sim_clock_url:  # development only: the emulator's jumpable clock
        jobs = [j for j in registry.periodic_jobs if j.name in CLOCK_JOBS]
        clock.follow(settings.sim_clock_url, on_jump=lambda: [queue.enqueue(j) for j in jobs])
    return registry


def create_app(settings: Settings | None = None, init_store: bool = True) -> Starlette:
    settings = settings or get_settings()
    registry = build(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if init_store:
            open_store(settings.database_url)
        yield

    routes = callback.routes(settings, registry.app_callbacks, registry.contacts_callbacks) + registry.routes
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    return app
