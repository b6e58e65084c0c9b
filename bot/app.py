"""The ASGI application: routes only. Each capability's endpoints live in its own package."""

from __future__ import annotations

from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Route

from bot.callbacks import CallbackEndpoint
from bot.crypto import WeComCrypto
from bot.health import healthz
from settings import Settings, get_settings


def callback_routes(settings: Settings) -> list[Route]:
    from bot.handlers import contacts_router, router

    app_crypto = WeComCrypto(settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id)
    contacts_crypto = (
        WeComCrypto(settings.wecom_contacts_token, settings.wecom_contacts_aes_key, settings.wecom_corp_id)
        if settings.contacts_callback_enabled
        else None
    )
    # change_contact may arrive on either URL (PROTOCOL §3.0), so the app URL routes both sets.
    app_router = type(router)()
    app_router.include(router)
    app_router.include(contacts_router)
    return [
        Route("/wecom/callback", CallbackEndpoint(app_crypto, app_router, settings, "app"), methods=["GET", "POST"]),
        Route(
            "/wecom/contacts/callback",
            CallbackEndpoint(contacts_crypto, contacts_router, settings, "contacts"),
            methods=["GET", "POST"],
        ),
    ]


def feature_routes(settings: Settings) -> list:
    """Routes contributed by capability packages (org API, notifications, login, admin…)."""
    import importlib

    routes = []
    for mod in ("bot.api", "bot.auth", "bot.ops"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        routes.extend(m.routes(settings))
    return routes


def create_app(settings: Settings | None = None, init_store: bool = True) -> Starlette:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app):
        if init_store:
            from store import init_store as init

            init(settings.database_url)
        yield

    routes = [Route("/healthz", healthz, methods=["GET"])]
    routes += callback_routes(settings)
    routes += feature_routes(settings)
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.settings = settings
    return app
