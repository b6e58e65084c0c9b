"""wqbot settings (docs/configuration.md): read once from the environment and `.env`, validated up front.

`get_settings()` is the one place the process reads its configuration. Missing or malformed
values raise one `SettingsError` listing every problem, each naming its variable and where its
value comes from (`WHERE`); the CLI prints those lines and exits, never a traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from bot.crypto import decode_aes_key


class SettingsError(Exception):
    """One or more settings are missing or malformed. `problems` holds every (variable, problem,
    fix) found in one pass, so an operator fixes them all at once; `variable` is the first."""

    def __init__(self, variable: str, problem: str, fix: str = "", more: list[tuple[str, str, str]] | None = None):
        self.problems = [(variable, problem, fix), *(more or [])]
        self.variable = variable
        super().__init__("\n".join(f"{v}: {p}" + (f" — fix: {f}" if f else "") for v, p, f in self.problems))


# Where each value comes from: the fix named when a required setting is missing or malformed
# (and the comments of `wqbot init`'s .env). docs/configuration.md has the full story.
WHERE = {
    "WECOM_CORP_ID": "copy 企业ID from the WeCom admin console, 我的企业 → 企业信息 (微签 form: 企业ID)",
    "WECOM_AGENT_ID": "copy AgentId from 应用管理 → 自建应用 → (your app) (微签 form: 应用ID)",
    "WECOM_APP_SECRET": "copy Secret from 应用管理 → 自建应用 → (your app) → Secret (查看) (微签 form: 自建应用密钥)",
    "WECOM_CONTACTS_SECRET": "copy Secret from 管理工具 → 通讯录同步 → 开启API接口同步 (微签 form: 通讯录密钥)",
    "WECOM_TOKEN": "copy Token from 应用管理 → 自建应用 → (your app) → 接收消息 → 设置API接收",
    "WECOM_AES_KEY": "copy EncodingAESKey (43 characters) from 应用管理 → 自建应用 → (your app) → 接收消息 → 设置API接收",
    "WECOM_CONTACTS_TOKEN": "copy Token from 管理工具 → 通讯录同步 → 设置接收事件服务器",
    "WECOM_CONTACTS_AES_KEY": "copy EncodingAESKey from 管理工具 → 通讯录同步 → 设置接收事件服务器",
    "SECRET_KEY": "generate one: `wqbot init` does, or python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
    "WEIQIAN_API_TOKEN": "generate one (`wqbot init` does) and give the same value to 微签's backend",
    "WEIQIAN_WEBHOOK_SECRET": "generate one and give the same value to 微签's backend",
}


def _fix(name: str) -> str:
    where = WHERE.get(name)
    console = " (or on the console's 企业微信参数 page, /admin/wecom)" if name.startswith("WECOM_") else ""
    return (
        f"set {name} in the environment or .env{console}: {where}" if where else f"see {name} in docs/configuration.md"
    )


def read_dotenv(path: str | os.PathLike = ".env") -> dict[str, str]:
    """KEY=VALUE lines; '#' comments, optional quotes, optional `export `."""
    p = Path(path)
    if not p.is_file():
        return {}
    out: dict[str, str] = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        if not sep:
            raise SettingsError(str(p), f"line {n} is not KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def url_password(url: str) -> str | None:
    """The password in `scheme://user:password@host/…`, or None."""
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def mask_url_password(url: str) -> str:
    """`url` with its password (if any) replaced by ****, the rest as written."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:****@{host}"))


# name, default (None = required), parser. Secrets are marked so they are masked everywhere.
_SECRET = {
    "WECOM_APP_SECRET",
    "WECOM_CONTACTS_SECRET",
    "WECOM_TOKEN",
    "WECOM_AES_KEY",
    "WECOM_CONTACTS_TOKEN",
    "WECOM_CONTACTS_AES_KEY",
    "SECRET_KEY",
    "WEIQIAN_API_TOKEN",
    "WEIQIAN_WEBHOOK_SECRET",
    "ADMIN_PASSWORD",
}


def _str(v: str) -> str:
    return v.strip()


def _bool(v: str) -> bool:
    s = v.strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _agent_id(v: str) -> int:
    return _positive_int(v) if v.strip() else 0  # 0: not set yet (setup mode)


def _positive_int(v: str) -> int:
    n = int(v)
    if n <= 0:
        raise ValueError("must be a positive whole number")
    return n


def _ratio(v: str) -> float:
    x = float(v)
    if not 0 <= x <= 1:
        raise ValueError("must be between 0 and 1")
    return x


def _token(v: str) -> str:
    v = v.strip()
    if v and not re.fullmatch(r"[A-Za-z0-9]{1,32}", v):
        raise ValueError("must be 1-32 letters or digits, as shown in the WeCom console")
    return v


def _aes_key(v: str) -> str:
    v = v.strip()
    if v:
        try:
            decode_aes_key(v)
        except ValueError as e:
            raise ValueError(f"EncodingAESKey {e} (copy the 43 characters from the WeCom console)") from None
    return v


def _http_url(v: str) -> str:
    v = v.strip().rstrip("/")
    if v:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
    return v


def _landing_url(v: str) -> str:
    # H5_URL may end in a hash route (…/h5/#/pages/login/login_pro): keep it as written.
    v = v.strip()
    if v:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
    return v


def _db_url(v: str) -> str:
    v = v.strip()
    if not re.match(r"^(sqlite:///|sqlite:///:memory:|postgres(ql)?://)", v):
        raise ValueError("must start with sqlite:/// or postgresql://")
    return v


def _queue_url(v: str) -> str:
    v = v.strip()
    if not re.match(r"^(sqlite:///|redis://|rediss://|memory://)", v):
        raise ValueError("must start with sqlite:///, redis:// or memory://")
    return v


def _match_field(v: str) -> str:
    v = v.strip()
    if v.lower().startswith("extattr:") and v[8:].strip():
        return "extattr:" + v[8:].strip()  # the custom field's name keeps its case (工号, EmpNo)
    if v.lower() not in ("userid", "mobile", "email", "alias", "biz_mail"):
        raise ValueError("must be userid, mobile, email, alias, biz_mail or extattr:<custom field name>")
    return v.lower()


def _scope(v: str) -> str:
    v = v.strip()
    if v not in ("snsapi_base", "snsapi_privateinfo"):
        raise ValueError("must be snsapi_base or snsapi_privateinfo")
    return v


def _corp_id(v: str) -> str:
    v = v.strip()
    if v and not re.fullmatch(r"[A-Za-z0-9]{4,64}", v):
        raise ValueError("must be the 企业ID from 我的企业 → 企业信息 (letters and digits)")
    return v


def _log_level(v: str) -> str:
    v = v.strip().upper()
    if v not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return v


def _log_format(v: str) -> str:
    v = v.strip().lower()
    if v not in ("json", "text"):
        raise ValueError("must be json or text")
    return v


def _csv(v: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in v.split(",") if s.strip())


def _hours(v: str) -> float:
    x = float(v)
    if not 0 <= x <= 24 * 90:
        raise ValueError("must be a number of hours from 0 (off) to 2160")
    return x


def _clock_time(v: str) -> str:
    v = v.strip()
    if v and not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", v):
        raise ValueError("must be a China time of day as HH:MM (e.g. 09:00), or empty for off")
    return v


def _weekdays(v: str) -> tuple[int, ...]:
    days: set[int] = set()
    for part in _csv(v):
        lo, _, hi = part.partition("-")
        if not (lo.isdigit() and (not hi or hi.isdigit())) or not 1 <= int(lo) <= int(hi or lo) <= 7:
            raise ValueError("must be ISO weekdays 1 (Monday) to 7 (Sunday), e.g. 1-5 or 1,3,5")
        days.update(range(int(lo), int(hi or lo) + 1))
    return tuple(sorted(days))


def _opt(name: str, default: str | None, parse: Callable[[str], Any]) -> Any:
    return field(default=None, metadata={"env": name, "default": default, "parse": parse})


@dataclass(frozen=True)
class Settings:
    wecom_corp_id: str = _opt("WECOM_CORP_ID", "", _corp_id)
    wecom_agent_id: int = _opt("WECOM_AGENT_ID", "", _agent_id)
    wecom_app_secret: str = _opt("WECOM_APP_SECRET", "", _str)
    wecom_contacts_secret: str = _opt("WECOM_CONTACTS_SECRET", "", _str)
    wecom_token: str = _opt("WECOM_TOKEN", "", _token)
    wecom_aes_key: str = _opt("WECOM_AES_KEY", "", _aes_key)
    wecom_contacts_token: str = _opt("WECOM_CONTACTS_TOKEN", "", _token)
    wecom_contacts_aes_key: str = _opt("WECOM_CONTACTS_AES_KEY", "", _aes_key)
    wecom_oauth_scope: str = _opt("WECOM_OAUTH_SCOPE", "snsapi_base", _scope)
    login_starts_per_minute: int = _opt("LOGIN_STARTS_PER_MINUTE", "60", _positive_int)  # per client
    wecom_enabled: bool = _opt("WECOM_ENABLED", "true", _bool)
    wecom_api_base: str = _opt("WECOM_API_BASE", "https://qyapi.weixin.qq.com", _http_url)
    wecom_oauth_base: str = _opt("WECOM_OAUTH_BASE", "https://open.weixin.qq.com", _http_url)
    wecom_sso_base: str = _opt("WECOM_SSO_BASE", "https://login.work.weixin.qq.com", _http_url)
    public_url: str = _opt("PUBLIC_URL", "http://127.0.0.1:8000", _http_url)
    h5_url: str = _opt("H5_URL", "", _landing_url)
    pc_url: str = _opt("PC_URL", "", _landing_url)
    database_url: str = _opt("DATABASE_URL", "sqlite:///wqbot.db", _db_url)
    queue_url: str = _opt("QUEUE_URL", "sqlite:///wqbot-queue.db", _queue_url)
    secret_key: str = _opt("SECRET_KEY", None, _str)
    weiqian_api_token: str = _opt("WEIQIAN_API_TOKEN", "", _str)
    weiqian_webhook_url: str = _opt("WEIQIAN_WEBHOOK_URL", "", _http_url)
    weiqian_webhook_secret: str = _opt("WEIQIAN_WEBHOOK_SECRET", "", _str)
    sync_interval_minutes: int = _opt("SYNC_INTERVAL_MINUTES", "10", _positive_int)
    sync_match_field: str = _opt("SYNC_MATCH_FIELD", "userid", _match_field)
    sync_max_delete_ratio: float = _opt("SYNC_MAX_DELETE_RATIO", "0.2", _ratio)
    # Beyond the contract: operational knobs with safe defaults.
    sync_refresh_hours: int = _opt("SYNC_REFRESH_HOURS", "24", _positive_int)  # list_id mode: details age cap
    sync_detail_budget: int = _opt("SYNC_DETAIL_BUDGET", "5000", _positive_int)  # list_id mode: user/get per run
    greet_on_enter: bool = _opt("WQBOT_GREET_ON_ENTER", "false", _bool)
    admin_userids: tuple[str, ...] = _opt("ADMIN_USERIDS", "", _csv)
    admin_password: str = _opt("ADMIN_PASSWORD", "", _str)
    log_format: str = _opt("WQBOT_LOG_FORMAT", "json", _log_format)
    log_level: str = _opt("WQBOT_LOG_LEVEL", "INFO", _log_level)
    menu_file: str = _opt("MENU_FILE", "", _str)
    # Client-side ceilings per WeCom API per corp, any rolling minute / hour (WeCom: 10,000 / 150,000).
    wecom_rate_limit_per_min: int = _opt("WECOM_RATE_LIMIT_PER_MIN", "8000", _positive_int)
    wecom_rate_limit_per_hour: int = _opt("WECOM_RATE_LIMIT_PER_HOUR", "120000", _positive_int)
    # Follow-up (docs/notifications.md): deadline reminders, the morning digest, the 工作台 tile.
    remind_before_hours: float = _opt("REMIND_BEFORE_HOURS", "24", _hours)
    digest_at: str = _opt("DIGEST_AT", "", _clock_time)
    digest_weekdays: tuple[int, ...] = _opt("DIGEST_WEEKDAYS", "1-5", _weekdays)
    workbench_list_path: str = _opt("WORKBENCH_LIST_PATH", "/pages/task/task_list", _str)
    sim_clock_url: str = _opt("SIM_CLOCK_URL", "", _http_url)  # the emulator's /sim/clock (demo and tests only)

    # -- derived ---------------------------------------------------------------------------
    @property
    def wecom_configured(self) -> bool:
        """Everything WeCom needs is set (environment or console); else wqbot runs in setup mode."""
        return bool(self.wecom_corp_id and self.wecom_agent_id and self.wecom_app_secret)

    def snapshot(self) -> Settings:
        """These settings, fixed (a `LiveSettings` gives the console's current view)."""
        return self

    def refreshed(self) -> Settings:
        """These settings after re-reading the console's (a `LiveSettings` checks the store now)."""
        return self

    @property
    def contacts_callback_enabled(self) -> bool:
        return bool(self.wecom_contacts_token and self.wecom_contacts_aes_key)

    @property
    def queue_is_embedded(self) -> bool:
        return not self.queue_url.startswith(("redis://", "rediss://"))

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret value, URL passwords included, for the log redaction filter."""
        out: list[str] = []
        for f in fields(self):
            v = getattr(self, f.name)
            if f.metadata["env"] in _SECRET:
                if v:
                    out.append(v)
            elif isinstance(v, str) and "://" in v:
                password = url_password(v)
                if password:
                    out.append(password)
        return tuple(out)

    def masked(self) -> dict[str, str]:
        """Every setting as it may be shown: a secret only as 已设置/未设置 (no part of it), and a
        URL with its password replaced by ****."""
        out: dict[str, str] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            name = f.metadata["env"]
            if name in _SECRET:
                out[name] = "已设置" if v else "未设置"
            elif isinstance(v, str) and "://" in v:
                out[name] = mask_url_password(v)
            else:
                out[name] = str(v)
        return out

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{k}={v}" for k, v in self.masked().items()) + ")"


def sources(env: dict[str, str] | None = None, dotenv: str | os.PathLike | None = ".env") -> dict[str, str]:
    """The raw values of the environment over the `.env` file (what the console cannot change)."""
    source = dict(read_dotenv(dotenv)) if dotenv else {}
    source.update(os.environ if env is None else env)
    return {f.metadata["env"]: source[f.metadata["env"]] for f in fields(Settings) if f.metadata["env"] in source}


def load(
    env: dict[str, str] | None = None, dotenv: str | os.PathLike | None = ".env", console: dict[str, str] | None = None
) -> Settings:
    """Build Settings from `env` (default: os.environ) over the `.env` file over `console` (the
    values saved on /admin/wecom); the environment wins."""
    source = dict(console or {})
    # an empty environment value (`WECOM_APP_SECRET=`) leaves the field to the console
    source.update({k: v for k, v in sources(env, dotenv).items() if v.strip() or k not in source})
    values: dict[str, Any] = {}
    problems: list[tuple[str, str, str]] = []  # every problem of this pass, not just the first
    for f in fields(Settings):
        meta = f.metadata
        name = meta["env"]
        raw = source.get(name)
        if raw is None or (raw.strip() == "" and meta["default"] is None):
            if meta["default"] is None:
                problems.append((name, "is required but not set (environment or .env)", _fix(name)))
                continue
            raw = meta["default"]
        try:
            values[f.name] = meta["parse"](raw)
        except ValueError as e:
            problems.append((name, str(e) or "is malformed", _fix(name)))
    if values.get("weiqian_webhook_url") and not values.get("weiqian_webhook_secret"):
        problems.append(
            ("WEIQIAN_WEBHOOK_SECRET", "is required when WEIQIAN_WEBHOOK_URL is set", _fix("WEIQIAN_WEBHOOK_SECRET"))
        )
    token, key = values.get("wecom_contacts_token"), values.get("wecom_contacts_aes_key")
    if token is not None and key is not None and bool(token) != bool(key):
        missing = "WECOM_CONTACTS_AES_KEY" if token else "WECOM_CONTACTS_TOKEN"
        problems.append((missing, "must be set together with the other WECOM_CONTACTS_* callback value", _fix(missing)))
    if problems:
        first, *more = problems
        raise SettingsError(*first, more=more)
    s = Settings(**values)
    if not s.wecom_configured and s.wecom_enabled:
        s = replace(s, wecom_enabled=False)  # setup mode: 开启企业微信 stays off until WeCom is configured
    return s


# The console's values over the environment's (bot/ops/console_settings.py installs it).
Overlay = Callable[["LiveSettings"], Settings]
_overlay: Overlay | None = None


def set_overlay(fn: Overlay | None) -> None:
    global _overlay
    _overlay = fn


class LiveSettings:
    """Settings that follow /admin/wecom: every attribute is read from the current merged view,
    which the overlay refreshes every few seconds (so every process sees a change within 10 s)."""

    def __init__(self, env: dict[str, str] | None = None, dotenv: str | os.PathLike | None = ".env"):
        self.env, self.dotenv = env, dotenv
        self.base = load(env, dotenv)
        self.from_env = frozenset(k for k, v in sources(env, dotenv).items() if v.strip())

    def snapshot(self) -> Settings:
        return _overlay(self) if _overlay else self.base

    def refreshed(self) -> Settings:
        self.__dict__.pop("checked_at", None)  # the overlay re-reads the revision now
        return self.snapshot()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.snapshot(), name)

    def __repr__(self) -> str:
        return repr(self.snapshot())


_current: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read on first use and then kept."""
    global _current
    if _current is None:
        _current = cast(Settings, LiveSettings())
    return _current


def override(s: Settings | None) -> None:
    """For tests and the CLI: make `get_settings()` return `s` (None: re-read on next use)."""
    global _current
    _current = s
