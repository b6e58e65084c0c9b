"""The login routes (docs/api.md, "Login tickets"): /oauth/h5 → WeCom → /oauth/h5/callback → H5_URL with a ticket,
/wx/qrlogin → WeCom QR page → /wx/login → PC_URL with a ticket, and /login choosing between them.

A login is bound three ways before a code is exchanged: the `state` WeCom echoes back (random,
stored hashed, single use, expiring, for one flow), and the browser that started it (a random
id in an HttpOnly cookie whose hash the state record keeps), so a callback link lifted from one
browser logs nobody in anywhere else. The work is synchronous (store, WeCom API), so each
request runs it in the thread pool.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import string
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bot.auth.links import h5_entry
from bot.observability.logs import LogThrottle
from bot.wecom import APIError, InvalidCode, NoPrivilege, TransportError, WeComError, client_for
from settings import Settings
from store import login as login_store

from . import domain, identity, pages
from .nextpath import safe_next
from .ratelimit import StartLimiter, client_key
from .urls import authorize_url, landing_url, public_base, sso_url

log = logging.getLogger("wqbot.auth")

COOKIE = "wqbot_login"
# Under https the cookie is `__Host-` prefixed: browsers then take it only from this exact origin,
# over https, for path "/" (no sibling subdomain can plant one).
SECURE_COOKIE = "__Host-wqbot_login"
_COOKIE_CHARS = set(string.ascii_letters + string.digits)
_ID_LENGTH = 32  # the random part; a 32-character keyed hash of it follows


def cookie_name(settings: Settings) -> str:
    return SECURE_COOKIE if public_base(settings).startswith("https://") else COOKIE


def _browser_mac(settings: Settings, random_part: str) -> str:
    return hmac.new(
        settings.secret_key.encode(), f"wqbot-login-browser:{random_part}".encode(), hashlib.sha256
    ).hexdigest()[:32]


def new_browser_id(settings: Settings) -> str:
    """A browser id only wqbot can have issued: random, then a keyed hash of it."""
    random_part = login_store.random_token(_ID_LENGTH)
    return random_part + _browser_mac(settings, random_part)


def _browser_id(request: Request, settings: Settings) -> str | None:
    """The browser id in the login cookie, if wqbot issued it; None for a missing or made-up one
    (a client-chosen value is replaced, never adopted)."""
    value = request.cookies.get(cookie_name(settings), "")
    if len(value) != 2 * _ID_LENGTH or not set(value) <= _COOKIE_CHARS:
        return None
    random_part, mac = value[:_ID_LENGTH], value[_ID_LENGTH:]
    return value if hmac.compare_digest(mac, _browser_mac(settings, random_part)) else None


def _client_addr(request: Request) -> str:
    return request.client.host if request.client else "?"


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=302, headers=pages.NO_STORE)


def _set_cookie(response: Response, settings: Settings, browser_id: str) -> None:
    response.set_cookie(
        cookie_name(settings),
        browser_id,
        max_age=login_store.STATE_TTL,
        path="/",
        httponly=True,
        secure=public_base(settings).startswith("https://"),
        samesite="lax",
    )


def _landing(settings: Settings, flow: str) -> str:
    return settings.h5_url if flow == "h5" else settings.pc_url


def retry_url(settings: Settings, flow: str, next_path: str | None = None) -> str:
    if flow == "h5":
        return h5_entry(settings, next_path or "/")
    return public_base(settings) + "/wx/qrlogin" + (f"?next={quote(next_path, safe='')}" if next_path else "")


# -- start -----------------------------------------------------------------------------------------
class LoginStarts:
    """The start pages of one app, sharing one limit on how fast a client may start logins."""

    def __init__(self, settings: Settings):
        self.limiter = StartLimiter(settings.login_starts_per_minute)
        self._refused_log = LogThrottle(interval=60.0)  # a flood logs a line a minute per client

    async def h5(self, request: Request) -> Response:
        return await self._start(request, "h5")

    async def pc(self, request: Request) -> Response:
        return await self._start(request, "pc")

    async def choose(self, request: Request) -> Response:
        return await self._limited(request) or await choose(request)

    async def _limited(self, request: Request) -> Response | None:
        who = _client_addr(request)
        if self.limiter.allow(who):
            return None
        wait = self.limiter.retry_after(who)
        ok, suppressed = self._refused_log.allow(client_key(who))
        if ok:
            log.warning("login starts refused: too frequent", extra={"client": who, "also_refused": suppressed})
        return HTMLResponse(
            pages.too_many_starts_page(wait), status_code=429, headers={**pages.NO_STORE, "Retry-After": str(wait)}
        )

    async def _start(self, request: Request, flow: str) -> Response:
        return await self._limited(request) or await _start(request, flow)


async def _start(request: Request, flow: str) -> Response:
    settings = request.app.state.settings
    if not settings.wecom_enabled:
        return pages.page(pages.wecom_off(settings))
    if not _landing(settings, flow):
        return pages.page(pages.not_configured(settings, flow))
    next_path = safe_next(request.query_params.get("next"))
    browser_id = _browser_id(request, settings) or new_browser_id(settings)

    def work():
        if flow == "h5":
            configured = domain.mismatch(settings)
            if configured:
                return pages.page(pages.trusted_domain_mismatch(settings, configured))
        state = login_store.create_state(settings.secret_key, flow, next_path, browser_id)
        return _redirect(authorize_url(settings, state) if flow == "h5" else sso_url(settings, state))

    response = await run_in_threadpool(work)
    if response.status_code == 302:
        _set_cookie(response, settings, browser_id)
    return response


async def choose(request: Request) -> Response:
    """/login: WeCom's in-app browser (a "wxwork" user agent) → H5 OAuth; any other → QR login."""
    settings = request.app.state.settings
    if not settings.wecom_enabled:
        return pages.page(pages.wecom_off(settings))
    next_path = safe_next(request.query_params.get("next"))
    if "wxwork" in request.headers.get("user-agent", "").lower():
        return _redirect(h5_entry(settings, next_path or "/"))
    return _redirect(retry_url(settings, "pc", next_path))


# -- finish ----------------------------------------------------------------------------------------
async def finish_h5(request: Request) -> Response:
    return await _finish(request, "h5")


async def finish_pc(request: Request) -> Response:
    return await _finish(request, "pc")


async def _finish(request: Request, flow: str) -> Response:
    if request.method == "HEAD":  # a link checker or prefetch must not use up the login
        return Response(status_code=200, headers=pages.NO_STORE)
    settings = request.app.state.settings
    if not settings.wecom_enabled:
        return pages.page(pages.wecom_off(settings))
    q = request.query_params
    code, state = q.get("code", ""), q.get("state", "")
    browser_id = _browser_id(request, settings)
    return await run_in_threadpool(complete, settings, flow, code, state, browser_id)


def complete(settings: Settings, flow: str, code: str, state: str, browser_id: str | None) -> Response:
    """Check the state, exchange the code, resolve the member, issue a ticket, redirect."""
    if not state:
        return pages.page(pages.state_refused(settings, "missing", flow), retry_url(settings, flow))
    try:
        record = login_store.consume_state(settings.secret_key, state, flow, browser_id)
    except login_store.StateRefused as e:
        log.warning("login state refused", extra={"flow": flow, "reason": e.reason})
        record_flow = e.record.flow if e.record is not None else None
        retry_flow = record_flow or flow
        next_path = e.record.next_path if e.record is not None else None
        return pages.page(
            pages.state_refused(settings, e.reason, flow, record_flow), retry_url(settings, retry_flow, next_path)
        )
    retry = retry_url(settings, flow, record.next_path)
    if not code:
        return pages.page(pages.cancelled(), retry)
    if len(code) > 512:
        return pages.page(pages.code_invalid(settings), retry)
    landing = _landing(settings, flow)
    if not landing:
        return pages.page(pages.not_configured(settings, flow))

    wecom = client_for(settings)
    try:
        info = wecom.auth_getuserinfo(code)
    except InvalidCode:
        log.warning("login code refused by WeCom (40029)", extra={"flow": flow})
        return pages.page(pages.code_invalid(settings), retry)
    except NoPrivilege as e:
        log.warning("login refused by WeCom", extra={"flow": flow, "errcode": e.errcode})
        return pages.page(pages.no_privilege(settings, e.errcode, e.hint), retry)
    except APIError as e:
        log.warning("login code exchange failed", extra={"flow": flow, "errcode": e.errcode})
        if e.errcode == 50003:
            return pages.page(pages.no_privilege(settings, e.errcode, e.hint), retry)
        return pages.page(pages.wecom_error(e.errcode, e.hint), retry)
    except (TransportError, WeComError) as e:
        log.warning("login code exchange failed", extra={"flow": flow, "error": str(e)})
        return pages.page(pages.wecom_unreachable(), retry)

    userid = info.get("userid") or info.get("UserId")  # the older user/getuserinfo spelling
    if not userid:
        log.info("login by a non-member refused", extra={"flow": flow})
        return pages.page(pages.non_member())
    member = identity.find_member(str(userid))
    if member is None:
        log.info("login by a member unknown to the directory", extra={"flow": flow, "userid": userid})
        return pages.page(pages.unknown_member(str(userid)))
    if not member.active:
        log.info("login by a disabled member refused", extra={"flow": flow, "userid": member.userid})
        return pages.page(pages.disabled_member(member.userid))

    user_ticket = info.get("user_ticket")
    if settings.wecom_oauth_scope == "snsapi_privateinfo" and user_ticket:
        _collect_private_fields(settings, wecom, member.userid, user_ticket)

    ticket = login_store.issue_ticket(settings.secret_key, member.userid, flow)
    log.info("login", extra={"flow": flow, "userid": member.userid})
    return _redirect(landing_url(landing, safe_next(record.next_path), ticket))


def _collect_private_fields(settings: Settings, wecom, userid: str, user_ticket: str) -> None:
    """Best effort: a failure here is logged and the login goes on without the fields."""
    try:
        detail = wecom.auth_getuserdetail(user_ticket)
    except WeComError as e:
        log.warning("auth/getuserdetail failed; mobile/email not updated", extra={"userid": userid, "error": str(e)})
        return
    if str(detail.get("userid", userid)).lower() != userid.lower():
        log.warning("auth/getuserdetail answered for another member; ignored", extra={"userid": userid})
        return
    try:
        identity.store_private_fields(settings, userid, detail)
    except Exception:
        log.exception("storing mobile/email from OAuth failed", extra={"userid": userid})
