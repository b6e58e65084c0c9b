"""`POST /api/v1/jssdk/signature {"url"}`: what a page passes to `wx.config` and `wx.agentConfig`.

Signature (docs/wecom.md, "JS-SDK"): sha1("jsapi_ticket=T&noncestr=N&timestamp=S&url=U"), with the corp's
jsapi_ticket for wx.config and the app's agent_config ticket for wx.agentConfig (both cached by
the API client). U is the page URL without its #fragment. Only pages on PUBLIC_URL's or H5_URL's
origin are signed: a signature for any other page would let it use this app's identity.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.auth.urls import origin
from bot.wecom import WeComError, client_for
from settings import Settings
from store import clock

from .common import APIError, endpoint, json_body

log = logging.getLogger("wqbot.jssdk")

MAX_URL = 2048
_NONCE = string.ascii_letters + string.digits


def signature(ticket: str, noncestr: str, timestamp: str | int, url: str) -> str:
    string1 = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(string1.encode()).hexdigest()


def allowed_origins(settings: Settings) -> set[str]:

    return {o for o in (origin(settings.public_url), origin(settings.h5_url) if settings.h5_url else None) if o}


def page_url(settings: Settings, url) -> str:
    """The URL to sign (fragment removed), or APIError 400 naming what is wrong with it."""

    if not isinstance(url, str) or not url:
        raise APIError(400, "invalid_url", 'send {"url": "<the full URL of the page, location.href>"}')
    if len(url) > MAX_URL:
        raise APIError(400, "invalid_url", f"url longer than {MAX_URL} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url) or "\\" in url:
        raise APIError(400, "invalid_url", "url contains spaces, control characters or backslashes")
    url = url.split("#", 1)[0]
    page_origin = origin(url)
    if page_origin is None:
        raise APIError(400, "invalid_url", "url must be an absolute http(s) URL without user info")
    allowed = allowed_origins(settings)
    if page_origin not in allowed:
        raise APIError(
            403,
            "origin_not_allowed",
            f"only pages on {' or '.join(sorted(allowed))} are signed (PUBLIC_URL, H5_URL); got {page_origin}",
        )
    return url


def sign(settings: Settings, url: str, now: float | None = None, nonce: str | None = None) -> dict:
    wecom = client_for(settings)
    try:
        corp_ticket = wecom.jsapi_ticket()
        agent_ticket = wecom.agent_jsapi_ticket()
    except WeComError as e:
        log.warning("JS-SDK ticket unavailable", extra={"error": str(e)})
        hint = getattr(e, "hint", "") or "check that WECOM_API_BASE is reachable"
        raise APIError(502, "wecom_unavailable", f"WeCom did not issue a JS-SDK ticket: {e}. {hint}") from None
    timestamp = int(now if now is not None else clock.now())
    noncestr = nonce or "".join(secrets.choice(_NONCE) for _ in range(16))
    return {
        "url": url,
        "config": {
            "appId": settings.wecom_corp_id,
            "timestamp": timestamp,
            "nonceStr": noncestr,
            "signature": signature(corp_ticket, noncestr, timestamp, url),
        },
        "agentConfig": {
            "corpid": settings.wecom_corp_id,
            "agentid": settings.wecom_agent_id,
            "timestamp": timestamp,
            "nonceStr": noncestr,
            "signature": signature(agent_ticket, noncestr, timestamp, url),
        },
    }


@endpoint
async def jssdk_signature(request: Request, settings: Settings) -> JSONResponse:
    body = await json_body(request)
    url = page_url(settings, body.get("url"))
    return JSONResponse(await run_in_threadpool(sign, settings, url), headers={"Cache-Control": "no-store"})


def routes(settings: Settings) -> list[Route]:
    return [Route("/api/v1/jssdk/signature", jssdk_signature, methods=["POST"])]
