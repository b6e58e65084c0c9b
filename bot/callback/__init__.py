"""The WeCom callback pipeline, in the order a delivery goes through it:

    fast_path.py     ASGI in front of the app: the two callback URLs skip Starlette's routing
    endpoint.py      query and body (64 KiB cap), signature, decryption, receive id, XML
    router.py        the handler for the message (a matcher plus a function)
    group_commit.py  deliveries ready at once share one transaction
    deliveries.py    handler + delivery key in one transaction: each delivery applied once
    replies.py       the passive reply a handler returns, encrypted by the endpoint
    xml.py           WeCom's XML both ways, DTDs and entities refused

The crypto is bot/crypto/, the handlers are bot/handlers/. `routes()` builds the two endpoints
from the routers the capabilities filled (bot/registry.py).
"""

from __future__ import annotations

from starlette.routing import Route

from bot.crypto import WeComCrypto
from settings import Settings

from .endpoint import CallbackEndpoint
from .fast_path import CallbackFastPath
from .router import Context, Inbound, Router

__all__ = ["CallbackEndpoint", "CallbackFastPath", "Context", "Inbound", "Router", "routes"]


def routes(settings: Settings, app_router: Router, contacts_router: Router) -> list[Route]:
    """`/wecom/callback` (接收消息) and `/wecom/contacts/callback` (通讯录同步).

    change_contact may arrive on either URL (WeCom sends it to the app URL when no contacts
    callback is set up: docs/wecom.md), so the app URL routes both sets of handlers."""

    # Each endpoint calls these when the settings it reads are a new snapshot (the console
    # changed them), so a crypto object is built once per set of values.
    def crypto_for(token: str, aes_key: str, corp_id: str) -> WeComCrypto | None:
        return WeComCrypto(token, aes_key, corp_id) if token and aes_key and corp_id else None

    def app_crypto(s: Settings) -> WeComCrypto | None:
        return crypto_for(s.wecom_token, s.wecom_aes_key, s.wecom_corp_id)

    def contacts_crypto(s: Settings) -> WeComCrypto | None:
        return crypto_for(s.wecom_contacts_token, s.wecom_contacts_aes_key, s.wecom_corp_id)

    both = Router()
    both.include(app_router)
    both.include(contacts_router)
    return [
        Route("/wecom/callback", CallbackEndpoint(app_crypto, both, settings, "app"), methods=["GET", "POST"]),
        Route(
            "/wecom/contacts/callback",
            CallbackEndpoint(contacts_crypto, contacts_router, settings, "contacts"),
            methods=["GET", "POST"],
        ),
    ]
