"""The emulator's settings: one corp, one self-built app, its callbacks, limits and switches.

`SimConfig.from_env()` reads the same variables wqbot reads (WECOM_CORP_ID, WECOM_APP_SECRET, …)
from the environment and `.env`, so both sides agree without copying; anything unset falls back
to a built-in development value, so `wqbot sim` runs with nothing configured. It never calls
`settings.get_settings()`, which insists on wqbot-only settings.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from settings import read_dotenv


def _dev_aes_key(label: str) -> str:
    return base64.b64encode(hashlib.sha256(f"wqbot-sim {label}".encode()).digest()).decode()[:43]


# Built-in development credentials: printed by `wqbot sim` so wqbot can be pointed at them.
DEFAULTS = {
    "WECOM_CORP_ID": "wwsim5e1f2a3b4c5d6e",
    "WECOM_AGENT_ID": "1000002",
    "WECOM_APP_SECRET": "sim-app-secret-5H9kQ2vX7pL3",
    "WECOM_CONTACTS_SECRET": "sim-contacts-secret-R4tY8uI1oP6a",
    "WECOM_TOKEN": "WqbotSimToken",
    "WECOM_AES_KEY": _dev_aes_key("app"),
    "WECOM_CONTACTS_TOKEN": "WqbotSimContacts",
    "WECOM_CONTACTS_AES_KEY": _dev_aes_key("contacts"),
}

SECRET_NAMES = (
    "WECOM_APP_SECRET",
    "WECOM_CONTACTS_SECRET",
    "WECOM_TOKEN",
    "WECOM_AES_KEY",
    "WECOM_CONTACTS_TOKEN",
    "WECOM_CONTACTS_AES_KEY",
)


@dataclass
class SimConfig:
    # -- the corp and its app (the env names in brackets) --------------------------------
    corp_id: str = DEFAULTS["WECOM_CORP_ID"]  # [WECOM_CORP_ID]
    corp_name: str = "微签演示科技有限公司"
    mail_domain: str = "weiqian-demo.cn"
    agent_id: int = int(DEFAULTS["WECOM_AGENT_ID"])  # [WECOM_AGENT_ID]
    agent_name: str = "微签"
    app_secret: str = DEFAULTS["WECOM_APP_SECRET"]  # [WECOM_APP_SECRET]
    contacts_secret: str = DEFAULTS["WECOM_CONTACTS_SECRET"]  # [WECOM_CONTACTS_SECRET]
    token: str = DEFAULTS["WECOM_TOKEN"]  # [WECOM_TOKEN] app callback
    aes_key: str = DEFAULTS["WECOM_AES_KEY"]  # [WECOM_AES_KEY]
    contacts_token: str = DEFAULTS["WECOM_CONTACTS_TOKEN"]  # [WECOM_CONTACTS_TOKEN] 通讯录同步 callback
    contacts_aes_key: str = DEFAULTS["WECOM_CONTACTS_AES_KEY"]  # [WECOM_CONTACTS_AES_KEY]
    # the app's 接收消息 URL; callback-capable cards need one (43012 otherwise), as in WeCom
    callback_url: str = ""
    # 通讯录同步 → 设置接收事件服务器; empty: change_contact goes to callback_url, signed with the app keys
    contacts_callback_url: str = ""
    # 网页授权及JS-SDK 可信域名 (host[:port], compared literally as WeCom does)
    redirect_domain: str = "127.0.0.1:8000"
    # 企业微信授权登录 → Web网页 授权回调域 (empty: only redirect_domain)
    sso_redirect_domain: str = ""
    home_url: str = ""
    # the app's 可见范围
    visible_departments: tuple = (1,)
    visible_users: tuple = ()

    # -- the generated directory ---------------------------------------------------------
    users: int = 200
    departments: int = 20
    seed: int = 1

    # -- behaviour switches --------------------------------------------------------------
    token_expires_in: int = 7200
    code_ttl: int = 300  # OAuth / QR-login codes: 5 minutes, single use
    user_ticket_ttl: int = 1800
    response_code_ttl: int = 24 * 3600  # WeCom says 24 h or 72 h (docs/wecom.md): design for ≤ 24 h
    # apps created after 2022-06-20: user/get and user/list omit mobile, email, gender, avatar…
    hide_private: bool = False
    # 通讯录同步 secret from a server IP first used after 2022-08-15: detail reads answer 48009
    contacts_new_ip: bool = False
    # 通讯录同步 callbacks configured after 2022-08-15 carry IDs only (docs/wecom.md, "Events wqbot handles")
    ids_only_callbacks: bool = False

    # -- quotas (docs/wecom.md, "Quotas"): per corp, per API --------------------------------------
    quota_per_minute: int = 10_000
    quota_per_hour: int = 150_000
    # path (without /cgi-bin/) -> {"per_minute": n, "per_hour": n}
    quota_overrides: dict = field(
        default_factory=lambda: {
            "get_jsapi_ticket": {"per_hour": 400},
            "ticket/get": {"per_hour": 100},
        }
    )
    debug_per_minute: int = 5  # `debug=1` in a URL
    member_messages_per_minute: int = 30  # beyond: silently dropped
    member_messages_per_hour: int = 1000

    # -- callbacks the emulator makes --------------------------------------------------
    callback_timeout: float = 5.0  # WeCom gives up after 5 s
    callback_retries: int = 3  # on connect failure or timeout only
    callback_retry_interval: float = 1.0

    # -- bookkeeping -------------------------------------------------------------------
    max_hold_seconds: float = 60.0  # the longest a "timeout" fault holds a request
    call_log_max: int = 50_000  # the newest calls kept in full; per-API counts stay exact

    def __post_init__(self):
        self.agent_id = int(self.agent_id)
        self.visible_departments = tuple(int(d) for d in self.visible_departments)
        self.visible_users = tuple(self.visible_users)

    # -- derived ------------------------------------------------------------------------
    @property
    def contacts_target(self) -> tuple[str, str, str]:
        """(url, token, aes_key) change_contact is sent to."""
        if self.contacts_callback_url:
            return self.contacts_callback_url, self.contacts_token or self.token, self.contacts_aes_key or self.aes_key
        return self.callback_url, self.token, self.aes_key

    def sso_domains(self) -> tuple[str, ...]:
        return tuple(d for d in (self.redirect_domain, self.sso_redirect_domain) if d)

    def with_changes(self, **changes) -> "SimConfig":
        return replace(self, **changes)

    def public(self) -> dict:
        """Every field, secrets masked (for GET /sim/config and the start-up banner)."""
        secret = {"app_secret", "contacts_secret", "token", "aes_key", "contacts_token", "contacts_aes_key"}
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in secret:
                v = ("****" + v[-2:]) if v else ""
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    # -- from the environment -----------------------------------------------------------
    @classmethod
    def from_env(cls, env: dict | None = None, dotenv: str | os.PathLike | None = ".env", **overrides) -> "SimConfig":
        """Credentials from the environment over `.env` (the environment wins), defaults otherwise.

        Also returns where each credential came from in `.sources` (env or default), for the banner."""

        source = dict(read_dotenv(dotenv)) if dotenv else {}
        source.update(os.environ if env is None else env)

        def get(name: str) -> str:
            v = (source.get(name) or "").strip()
            return v

        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        mapping = {
            "corp_id": "WECOM_CORP_ID",
            "agent_id": "WECOM_AGENT_ID",
            "app_secret": "WECOM_APP_SECRET",
            "contacts_secret": "WECOM_CONTACTS_SECRET",
            "token": "WECOM_TOKEN",
            "aes_key": "WECOM_AES_KEY",
            "contacts_token": "WECOM_CONTACTS_TOKEN",
            "contacts_aes_key": "WECOM_CONTACTS_AES_KEY",
        }
        for attr, name in mapping.items():
            v = get(name)
            if v:
                values[attr], sources[name] = v, "env"
            else:
                values[attr], sources[name] = DEFAULTS[name], "default"
        # wqbot with WECOM_CONTACTS_SECRET unset reads the directory with the app secret; the corp
        # still has a 通讯录同步 secret, just one wqbot does not know.
        public_url = get("PUBLIC_URL")
        if public_url:
            netloc = urlsplit(public_url).netloc
            if netloc:
                values["redirect_domain"] = netloc
                values["callback_url"] = public_url.rstrip("/") + "/wecom/callback"
                if sources["WECOM_CONTACTS_TOKEN"] == "env" and sources["WECOM_CONTACTS_AES_KEY"] == "env":
                    values["contacts_callback_url"] = public_url.rstrip("/") + "/wecom/contacts/callback"
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**values)
        cfg.sources = sources  # type: ignore[attr-defined]
        return cfg
