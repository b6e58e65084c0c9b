"""The admin console at /admin: server-rendered pages (Jinja2, Chinese UI) and three actions.

Login: WeCom QR login (PC web login) for userids in ADMIN_USERIDS, or the local ADMIN_PASSWORD
for first setup. Sessions are signed cookies (bot.ops.session); every POST carries the
session's CSRF token. Each action calls the owning capability's public function (bot.ops.actions)
and is written to the audit table.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from bot.ops import actions, panels
from bot.ops import session as sess
from bot.ops.status import audit
from bot.ops.wecom_page import WeComPage
from bot.wecom import WeComError, client_for
from settings import Settings
from store import clock

log = logging.getLogger("wqbot.admin")

_TEMPLATES = Path(__file__).parent / "templates"
_env = Environment(
    loader=FileSystemLoader(str(_TEMPLATES)),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
MAX_FORM = 16 * 1024

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}

# Messages shown after an action, by code (never free text from the query string).
NOTICES = {
    "sync_queued": "已加入同步队列，稍后刷新查看结果。",
    "sync_done": "同步已完成。",
    "resent": "已重新发送通知。",
    "webhook_retried": "已重新投递 Webhook。",
    "logged_out": "已退出登录。",
    "wecom_saved": "企业微信参数已保存，所有进程将在 10 秒内生效。",
    "wecom_unchanged": "没有修改任何参数。",
    "mapping_imported": "账号对应表已导入，成员已重新关联。",
}


def _fmt_time(ts) -> str:
    if not ts:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


def _ago(ts) -> str:
    if not ts:
        return "—"
    s = max(0, int(clock.now() - float(ts)))
    if s < 60:
        return f"{s} 秒前"
    if s < 3600:
        return f"{s // 60} 分钟前"
    if s < 86400:
        return f"{s // 3600} 小时前"
    return f"{s // 86400} 天前"


_env.filters["time"] = _fmt_time
_env.filters["ago"] = _ago


def render(name: str, status: int = 200, **ctx) -> HTMLResponse:
    html = _env.get_template(f"admin/{name}").render(**ctx)
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int, path: str = "/admin"):
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="lax", secure=_secure(request))


def _client_addr(request: Request) -> str:
    return request.client.host if request.client else "?"


async def _form(request: Request, limit: int = MAX_FORM) -> dict[str, str]:
    """application/x-www-form-urlencoded, capped; the last value of each field."""
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return {}
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[-1] for k, v in parsed.items()}


class Console:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.throttle = sess.Throttle()

    # -- helpers ----------------------------------------------------------------------------------
    async def read_form(self, request: Request, limit: int = MAX_FORM) -> dict[str, str]:
        return await _form(request, limit)

    def csrf_ok(self, admin, token: str | None) -> bool:
        return sess.csrf_ok(admin, token)

    async def admin(self, request: Request) -> sess.Admin | None:
        # Reads the admin's "valid after" from the store: in the thread pool, off the event loop.
        return await run_in_threadpool(sess.current_admin, self.settings, request.cookies.get(sess.COOKIE))

    def _to_login(self, request: Request) -> Response:
        return RedirectResponse("/admin/login", status_code=303, headers={"Cache-Control": "no-store"})

    def page(self, request: Request, admin, name: str, **ctx) -> HTMLResponse:
        notice = NOTICES.get(request.query_params.get("done", ""))
        return render(
            name,
            admin=admin,
            csrf=admin.csrf,
            nav=name,
            notice=notice,
            error=request.query_params.get("error_code")
            and panels.action_error_text(request.query_params.get("error_code")),
            **ctx,
        )

    # -- login ------------------------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        if await self.admin(request):
            return RedirectResponse("/admin", status_code=303)
        return self._login_page(request)

    def _login_page(self, request: Request, error: str | None = None, status: int = 200) -> Response:
        s = self.settings
        nonce = secrets.token_urlsafe(16)
        resp = render(
            "login.html",
            status=status,
            error=error,
            login_nonce=nonce,
            password_enabled=bool(s.admin_password),
            wecom_enabled=bool(s.admin_userids),
            notice=NOTICES.get(request.query_params.get("done", "")),
        )
        _set_cookie(
            resp,
            request,
            sess.STATE_COOKIE,
            sess.sign(s.secret_key, "login", {"n": nonce, "exp": clock.now() + sess.STATE_LIFETIME}),
            sess.STATE_LIFETIME,
        )
        return resp

    async def login_password(self, request: Request) -> Response:
        s = self.settings
        form = await _form(request)
        pre = sess.unsign(s.secret_key, "login", request.cookies.get(sess.STATE_COOKIE))
        # As bytes: compare_digest raises TypeError on a str with non-ASCII characters.
        if pre is None or not secrets.compare_digest(
            str(pre.get("n", "")).encode(), form.get("login_nonce", "").encode()
        ):
            return self._login_page(request, "登录页面已过期，请重新输入密码。", status=400)
        if not s.admin_password:
            return self._login_page(
                request, "未设置 ADMIN_PASSWORD，不能用密码登录。请设置后重启，或使用企业微信扫码登录。", status=403
            )
        who = _client_addr(request)
        blocked = self.throttle.blocked(who)
        if blocked == "client":
            return self._login_page(request, "密码错误次数过多，请 15 分钟后再试。", status=429)
        if blocked == "everyone":
            log.warning("admin password login paused: too many failures from all addresses")
            return self._login_page(
                request,
                "最近密码错误次数过多（可能有人在猜密码），密码登录已暂停 15 分钟。请使用企业微信扫码登录，或稍后再试。",
                status=429,
            )
        if not sess.password_matches(s, form.get("password", "")):
            self.throttle.failed(who)
            log.warning("admin password refused", extra={"client": who})
            return self._login_page(request, "密码不正确。", status=403)
        self.throttle.succeeded(who)
        return await self._logged_in(request, "admin", "password")

    async def _logged_in(self, request: Request, userid: str, via: str) -> Response:
        cookie, _ = await run_in_threadpool(sess.new_session, self.settings, userid, via)
        resp = RedirectResponse("/admin", status_code=303, headers={"Cache-Control": "no-store"})
        _set_cookie(resp, request, sess.COOKIE, cookie, sess.LIFETIME)
        resp.delete_cookie(sess.STATE_COOKIE, path="/admin")
        log.info("admin logged in", extra={"admin": userid, "via": via})
        return resp

    async def login_wecom(self, request: Request) -> Response:
        """Start a WeCom QR login (PC web login) that returns to /admin/login/wecom/callback."""
        s = self.settings
        if not s.admin_userids:
            return self._login_page(request, "未设置 ADMIN_USERIDS，不能扫码登录。", status=403)
        state = secrets.token_urlsafe(24).replace("-", "a").replace("_", "b")  # WeCom: a-zA-Z0-9
        url = panels.admin_sso_url(s, state)
        resp = RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
        _set_cookie(
            resp,
            request,
            sess.STATE_COOKIE,
            sess.sign(s.secret_key, "login", {"state": state, "exp": clock.now() + sess.STATE_LIFETIME}),
            sess.STATE_LIFETIME,
        )
        return resp

    async def login_wecom_callback(self, request: Request) -> Response:
        s = self.settings
        q = request.query_params
        pre = sess.unsign(s.secret_key, "login", request.cookies.get(sess.STATE_COOKIE))
        if (
            pre is None
            or not q.get("state")
            or not secrets.compare_digest(str(pre.get("state", "")).encode(), q["state"].encode())
        ):
            return self._login_page(request, "登录已过期或不是从本页面发起的，请重新扫码。", status=403)
        if not q.get("code"):
            return self._login_page(request, "已取消扫码登录。", status=400)

        try:
            info = await run_in_threadpool(client_for(s).auth_getuserinfo, q["code"])
        except WeComError as e:
            hint = getattr(e, "hint", "") or str(e)
            return self._login_page(
                request, f"企业微信登录失败：{hint}", status=502 if not hasattr(e, "errcode") else 400
            )
        userid = info.get("userid") or info.get("UserId") or ""
        if not userid or userid not in s.admin_userids:
            log.warning("admin login refused: not in ADMIN_USERIDS", extra={"admin": userid or "(non-member)"})
            return self._login_page(
                request, f"成员 {userid or '（非企业成员）'} 不是管理员（ADMIN_USERIDS）。", status=403
            )
        return await self._logged_in(request, userid, "wecom")

    async def logout(self, request: Request) -> Response:
        admin = await self.admin(request)
        form = await _form(request)
        if admin is None or not sess.csrf_ok(admin, form.get("csrf")):
            return PlainTextResponse("CSRF token missing or wrong: reload the page and try again", status_code=403)
        await run_in_threadpool(sess.end_sessions, admin.userid)  # copies of this cookie end too
        log.info("admin logged out", extra={"admin": admin.userid})
        resp = RedirectResponse("/admin/login?done=logged_out", status_code=303)
        resp.delete_cookie(sess.COOKIE, path="/admin")
        return resp

    # -- pages ------------------------------------------------------------------------------------
    async def status(self, request: Request) -> Response:
        admin = await self.admin(request)
        if admin is None:
            return self._to_login(request)
        data = await run_in_threadpool(panels.status, self.settings)
        return self.page(request, admin, "status.html", **data)

    async def directory(self, request: Request) -> Response:
        admin = await self.admin(request)
        if admin is None:
            return self._to_login(request)
        data = await run_in_threadpool(panels.directory)
        return self.page(request, admin, "directory.html", **data)

    async def notifications(self, request: Request) -> Response:
        admin = await self.admin(request)
        if admin is None:
            return self._to_login(request)
        data = await run_in_threadpool(panels.notifications)
        return self.page(request, admin, "notifications.html", **data)

    async def webhooks(self, request: Request) -> Response:
        admin = await self.admin(request)
        if admin is None:
            return self._to_login(request)
        data = await run_in_threadpool(panels.webhooks)
        return self.page(request, admin, "webhooks.html", **data)

    # -- actions ----------------------------------------------------------------------------------
    async def action(self, request: Request) -> Response:
        admin = await self.admin(request)
        if admin is None:
            return self._to_login(request)
        form = await _form(request)
        if not sess.csrf_ok(admin, form.get("csrf")):
            log.warning("admin action refused: bad CSRF token", extra={"admin": admin.userid})
            return PlainTextResponse("CSRF token missing or wrong: reload the page and try again", status_code=403)
        name = request.path_params["name"]
        back = {"sync": "/admin", "resend": "/admin/notifications", "retry-webhook": "/admin/webhooks"}.get(name)
        if back is None:
            return PlainTextResponse("unknown action", status_code=404)
        target = form.get("id", "")
        ok, code, detail = await run_in_threadpool(actions.run, self.settings, name, target)

        await run_in_threadpool(audit, admin.userid, name, target, detail)
        log.info("admin action", extra={"admin": admin.userid, "action": name, "target": target, "ok": ok})
        param = {"done": code} if ok else {"error_code": code}
        return RedirectResponse(f"{back}?{urlencode(param, quote_via=quote)}", status_code=303)

    async def stylesheet(self, request: Request) -> Response:
        css = (_TEMPLATES / "admin" / "admin.css").read_text(encoding="utf-8")
        return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=3600"})


def admin_routes(settings: Settings) -> list[Route]:
    c = Console(settings)
    w = WeComPage(c)
    return [
        Route("/admin/wecom", w.show, methods=["GET"]),
        Route("/admin/wecom", w.save, methods=["POST"]),
        Route("/admin/wecom/accounts", w.import_mapping, methods=["POST"]),
        Route("/admin/wecom/accounts.csv", w.report_csv, methods=["GET"]),
        Route("/admin/static/wecom.js", w.script, methods=["GET"]),
        Route("/admin", c.status, methods=["GET"]),
        Route("/admin/", c.status, methods=["GET"]),
        Route("/admin/directory", c.directory, methods=["GET"]),
        Route("/admin/notifications", c.notifications, methods=["GET"]),
        Route("/admin/webhooks", c.webhooks, methods=["GET"]),
        Route("/admin/login", c.login_form, methods=["GET"]),
        Route("/admin/login", c.login_password, methods=["POST"]),
        Route("/admin/login/wecom", c.login_wecom, methods=["GET"]),
        Route("/admin/login/wecom/callback", c.login_wecom_callback, methods=["GET"]),
        Route("/admin/logout", c.logout, methods=["POST"]),
        Route("/admin/actions/{name}", c.action, methods=["POST"]),
        Route("/admin/static/admin.css", c.stylesheet, methods=["GET"]),
    ]
