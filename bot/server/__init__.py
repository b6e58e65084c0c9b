"""What `wqbot serve` puts around the app: the layers uvicorn itself lacks.

    stack(app)   BodyTimeout(CallbackFastPath(app)): a request body must arrive within
                 BODY_TIMEOUT (408), and the callback URLs skip Starlette's routing
    HEADER_PROTOCOL  uvicorn's httptools protocol with a time and size limit on request headers
                 (408 / 431); used when httptools is installed (uvicorn[standard])

Tests run the callbacks through `stack()` too, so they exercise what production serves.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from bot.callback import CallbackFastPath

from .body_timeout import BODY_TIMEOUT, BodyTimeout

HEADER_PROTOCOL = "bot.server.header_timeout:HeaderTimeoutProtocol"

__all__ = ["BODY_TIMEOUT", "HEADER_PROTOCOL", "BodyTimeout", "stack"]


def stack(app: ASGIApp) -> BodyTimeout:
    """The ASGI app `wqbot serve` serves: `app` behind the callback fast path and the body time limit."""
    return BodyTimeout(CallbackFastPath(app))
