"""Is PUBLIC_URL's host the app's 可信域名? Asked of `agent/get` (its `redirect_domain`), cached.

When they differ, WeCom would show the employee its own terse "redirect_uri需使用应用可信域名"
page and never come back, so /oauth/h5 shows our page with the fix instead. The check is
advisory: when WeCom cannot be asked, or reports no domain, the login goes ahead.
"""

from __future__ import annotations

import logging
import threading
import time

from bot.wecom import WeComError, client_for
from settings import Settings

from .urls import public_host

log = logging.getLogger("wqbot.auth")

CHECK_TTL = 600  # seconds a good answer is trusted
RETRY_TTL = 60  # seconds before asking again after WeCom could not answer

_cache: dict[tuple, tuple[float, str | None]] = {}
_lock = threading.Lock()


def _key(settings: Settings) -> tuple:
    return settings.wecom_api_base, settings.wecom_corp_id, settings.wecom_agent_id


def _normalise(domain: str) -> str:
    d = domain.strip().lower()
    for prefix in ("https://", "http://"):
        if d.startswith(prefix):
            d = d[len(prefix) :]
    d = d.split("/", 1)[0]
    for default in (":443", ":80"):
        if d.endswith(default):
            d = d[: -len(default)]
    return d


def trusted_domain(settings: Settings) -> str | None:
    """The app's configured 可信域名 (as WeCom reports it), or None when unknown."""
    key = _key(settings)
    hit = _cache.get(key)
    if hit and hit[0] > time.time():
        return hit[1]
    with _lock:
        hit = _cache.get(key)
        if hit and hit[0] > time.time():
            return hit[1]
        try:
            domain = (client_for(settings).agent_get().get("redirect_domain") or "").strip() or None
            ttl = CHECK_TTL
        except WeComError as e:
            log.warning("could not read the app's 可信域名 (agent/get)", extra={"error": str(e)})
            domain, ttl = None, RETRY_TTL
        _cache[key] = (time.time() + ttl, domain)
        return domain


def mismatch(settings: Settings) -> str | None:
    """The configured 可信域名 when PUBLIC_URL's host[:port] is not it; None when fine or unknown."""
    configured = trusted_domain(settings)
    if not configured:
        return None
    if _normalise(configured) == public_host(settings):
        return None
    return configured


def forget() -> None:
    """Drop cached answers (tests, or after the operator fixed the console)."""
    with _lock:
        _cache.clear()
