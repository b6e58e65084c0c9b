"""/admin/wecom, 企业微信参数: the 微签 admin's form for connecting WeCom, laid out like 微签's own
(企业ID, 应用ID, 自建应用密钥, 通讯录密钥, the callback Token/EncodingAESKey pairs, 公有属性, 开启企业微信),
the values to copy into the WeCom console, the change record, and the account report with the
`userid,account` CSV override.

Saving runs `wqbot doctor`'s WeCom checks on the values first (bot/ops/wecom_checks.py); a form
that fails one is saved only when the admin ticks 仍然保存. Secrets never go back to the browser:
only 已设置 (…9c). A setting the environment sets is shown as 由环境变量设置 and not editable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

import settings as settings_mod
from bot.auth.urls import public_base
from bot.sync import accounts
from settings import LiveSettings, Settings, SettingsError

from . import console_settings as cs
from . import wecom_checks

log = logging.getLogger("wqbot.admin")

MAX_MAPPING = 2 * 1024 * 1024  # the CSV override's form
# WeCom's own generators: Token 3-32 letters/digits, EncodingAESKey 43 (docs/wecom.md)
RANDOM = {"WECOM_TOKEN": 32, "WECOM_CONTACTS_TOKEN": 32, "WECOM_AES_KEY": 43, "WECOM_CONTACTS_AES_KEY": 43}
_JS = Path(__file__).parent / "templates" / "admin" / "wecom.js"
CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def masked(value: str) -> str:
    return f"已设置 (…{value[-2:]})" if len(value) > 8 else ("已设置" if value else "未设置")


def from_env(s: Settings) -> frozenset[str]:
    """What the page may not change: the environment's settings (all of them without LiveSettings)."""
    return s.from_env if isinstance(s, LiveSettings) else frozenset(cs.FIELDS)


def context(s: Settings, errors: dict[str, str] | None = None, form: dict[str, str] | None = None) -> dict[str, Any]:
    cur = s.snapshot()
    env = from_env(s)
    errors = errors or {}
    rows = []
    for name, (label, secret) in cs.FIELDS.items():
        if name == "WECOM_ENABLED":
            continue
        value = getattr(cur, cs._ATTR[name])
        if name == "WECOM_AGENT_ID" and not value:
            value = ""
        shown = masked(str(value)) if secret else str(value)
        if form is not None and not secret and name in form and name not in env:
            shown = form[name]  # what the admin typed, to correct (never a secret)
        rows.append(
            {
                "name": name,
                "label": label,
                "secret": secret,
                "value": "" if secret else shown,
                "state": shown if secret else "",
                "from_env": name in env,
                "error": errors.get(name, ""),
                "random": RANDOM.get(name, 0),
            }
        )
    base = public_base(cur)
    report = accounts.report()
    return {
        "fields": rows,
        "enabled": cur.wecom_enabled,
        "enabled_from_env": "WECOM_ENABLED" in env,
        "configured": cur.wecom_configured,
        "redirect_url": base + "/wx/login",
        "callback_url": base + "/wecom/callback",
        "contacts_callback_url": base + "/wecom/contacts/callback",
        "trusted_domain": urlsplit(cur.public_url).netloc,
        "general_error": errors.get(wecom_checks.GENERAL, ""),
        "domain_error": errors.get(wecom_checks.TRUSTED_DOMAIN, ""),
        "form_error": errors.get("_form", ""),
        "checks_failed": bool(errors) and not errors.get("_form"),
        "history": cs.history(),
        "report": report,
        "ambiguous_members": sum(len(m) for m in report.ambiguous.values()),
    }


class WeComPage:
    def __init__(self, console: Any):
        self.console = console  # bot.ops.admin.Console: the session, rendering, the form reader

    @property
    def settings(self) -> Settings:
        return self.console.settings

    def _render(self, request: Request, admin: Any, status: int = 200, **ctx: Any) -> Response:
        resp = self.console.page(request, admin, "wecom.html", **ctx)
        resp.status_code = status
        resp.headers["Content-Security-Policy"] = CSP  # the 随机生成 and copy buttons: wecom.js
        return resp

    async def show(self, request: Request) -> Response:
        admin = await self.console.admin(request)
        if admin is None:
            return self.console._to_login(request)
        data = await run_in_threadpool(context, self.settings)
        return self._render(request, admin, **data)

    async def save(self, request: Request) -> Response:
        admin = await self.console.admin(request)
        if admin is None:
            return self.console._to_login(request)
        form = await self.console.read_form(request)
        if not self.console.csrf_ok(admin, form.get("csrf")):
            return PlainTextResponse("CSRF token missing or wrong: reload the page and try again", status_code=403)
        s = self.settings
        env = from_env(s)
        if not isinstance(s, LiveSettings):
            return PlainTextResponse("settings come from the environment only in this process", status_code=409)
        if "WECOM_ENABLED" not in env:
            form["WECOM_ENABLED"] = "true" if form.get("WECOM_ENABLED") in ("on", "true") else "false"
        values, errors = cs.validate(form, env)
        if errors:
            data = await run_in_threadpool(context, s, errors, form)
            return self._render(request, admin, 400, **data)

        def check() -> tuple[dict[str, str], Settings | None]:
            stored = cs.stored_values(s.secret_key)
            try:
                candidate = settings_mod.load(s.env, s.dotenv, console={**stored, **values})
            except SettingsError as e:
                return {e.variable if e.variable in cs.FIELDS else "_form": f"{e}"}, None
            if not candidate.wecom_corp_id or not candidate.wecom_agent_id or not candidate.wecom_app_secret:
                return {}, candidate  # setup continues: nothing to check against WeCom yet
            return wecom_checks.run(candidate), candidate

        problems, candidate = await run_in_threadpool(check)
        if problems and (candidate is None or form.get("force") != "on"):
            data = await run_in_threadpool(context, s, problems, form)
            return self._render(request, admin, 400, **data)

        def store() -> list[str]:
            old = s.snapshot()
            names = cs.save(
                s, admin.userid, values, "ok" if not problems else "仍然保存: " + ",".join(sorted(problems))
            )
            if names:
                cs.apply_effects(old, s.refreshed())
            return names

        names = await run_in_threadpool(store)
        log.info("admin saved 企业微信参数", extra={"admin": admin.userid, "fields": ",".join(names)})
        return RedirectResponse("/admin/wecom?done=" + ("wecom_saved" if names else "wecom_unchanged"), status_code=303)

    async def import_mapping(self, request: Request) -> Response:
        admin = await self.console.admin(request)
        if admin is None:
            return self.console._to_login(request)
        form = await self.console.read_form(request, MAX_MAPPING)
        if not self.console.csrf_ok(admin, form.get("csrf")):
            return PlainTextResponse("CSRF token missing or wrong: reload the page and try again", status_code=403)
        try:
            rows, relinked = await run_in_threadpool(accounts.import_mapping, form.get("mapping", ""), self.settings)
        except accounts.MappingError as e:
            data = await run_in_threadpool(context, self.settings, {"_mapping": str(e)})
            data["mapping_error"] = f"CSV 有误：{e}（每行 userid,account）"
            data["checks_failed"] = False
            return self._render(request, admin, 400, **data)
        log.info("admin imported account overrides", extra={"admin": admin.userid, "rows": rows})
        return RedirectResponse("/admin/wecom?done=mapping_imported", status_code=303)

    async def report_csv(self, request: Request) -> Response:
        admin = await self.console.admin(request)
        if admin is None:
            return self.console._to_login(request)
        text = await run_in_threadpool(lambda: accounts.report_csv(accounts.report()))
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="wqbot-accounts.csv"', "Cache-Control": "no-store"},
        )

    async def script(self, request: Request) -> Response:
        return Response(
            _JS.read_text(encoding="utf-8"), media_type="text/javascript", headers={"Cache-Control": "max-age=3600"}
        )
