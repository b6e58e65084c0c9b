"""`wqbot doctor`: check the settings and the WeCom side, one line per check, and say what to fix.

Every ✗ names the setting or the WeCom admin console page (管理后台) to change. The exit code is
1 when anything failed, 0 otherwise. Checks that need WeCom run one gettoken per secret (WeCom
blocks an IP for an hour after repeated wrong secrets, so nothing here loops on 40001).
"""

from __future__ import annotations

import ipaddress
import os
import secrets as _secrets
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from bot.crypto import WeComCrypto
from bot.observability.logs import redact
from bot.queue import make_huey
from bot.sync.fetch import ModeRefused, directory_access, read_departments
from bot.wecom import SECRET_PAGE, SECRET_VARIABLE, BadCredentials, IPNotAllowed, TransportError, client_for
from settings import Settings, SettingsError, load, sources
from store.console import ConsoleSetting
from store.db import connect

from . import console_settings

OK, FAIL, WARN = "✓", "✗", "!"
CLOCK_SKEW_LIMIT = 60.0  # seconds
DEFAULT_API_BASE = "https://qyapi.weixin.qq.com"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # ok, but something is off on purpose or by omission: said, not failed

    def line(self) -> str:
        mark = FAIL if not self.ok else WARN if self.warning else OK
        text = f"{mark} {self.name}: {self.detail}"
        if (not self.ok or self.warning) and self.fix:
            text += f" — fix: {self.fix}"
        return text


def _host_is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def _is_local(host: str) -> bool:
    host = host.strip("[]").lower()
    if host in ("localhost",):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_private or ip.is_link_local


def wecom_fix(e, secret_var: str | None = None, creds: str | None = None) -> str:
    """What to change for a WeCom error, naming the console page of the secret the failing call
    used (the error says which: `e.creds`)."""
    creds = creds or getattr(e, "creds", "app")
    creds = "contacts" if creds == "contacts" else "app"
    page, var = SECRET_PAGE[creds], secret_var or SECRET_VARIABLE[creds]
    if isinstance(e, IPNotAllowed):
        ip = e.ip or "this server's public IP"
        return f"add {ip} to {page} → 企业可信IP (it takes about a minute to apply; the call used {var})"
    if isinstance(e, TransportError):
        return (
            "this server cannot reach WECOM_API_BASE: check DNS, the firewall and any HTTPS proxy "
            "(HTTPS_PROXY) for outbound calls to qyapi.weixin.qq.com"
        )
    code = getattr(e, "errcode", None)
    if isinstance(e, BadCredentials) or code == 40001:
        if code == 40013:
            return "WECOM_CORP_ID is wrong: copy 企业ID from 我的企业 → 企业信息"
        return f"{var} is wrong or was reset: copy it again from {page} → Secret (查看)"
    return getattr(e, "hint", "") or "see the WeCom error codes in docs/wecom.md"


# what WeCom needs before anything works, with the console's (and the 微签 form's) label
WECOM_REQUIRED = (
    ("WECOM_CORP_ID", "企业ID"),
    ("WECOM_AGENT_ID", "应用ID"),
    ("WECOM_APP_SECRET", "自建应用密钥"),
    ("WECOM_TOKEN", "接收消息 Token"),
    ("WECOM_AES_KEY", "接收消息 EncodingAESKey"),
)


def console_values(base: Settings) -> dict[str, str]:
    """The values saved on /admin/wecom, read through the doctor's own connection (none when the
    store cannot be read: the store check says why)."""
    try:
        database = connect(base.database_url)
        try:
            if not database.table_exists("console_setting"):
                return {}
            with database.bind_ctx([ConsoleSetting]):
                return console_settings.stored_values(base.secret_key)
        finally:
            database.close()
    except Exception:
        return {}


def _describe(e) -> str:
    code = getattr(e, "errcode", None)
    if code is not None:
        return f"errcode {code} ({getattr(e, 'errmsg', '')[:80]})"
    return str(e)[:200]


class Doctor:
    def __init__(
        self,
        settings: Settings | None = None,
        http: httpx.Client | None = None,
        wecom_http: httpx.Client | None = None,
        env: dict | None = None,
    ):
        self.env = env
        self.settings = settings
        self.http = http  # reaches PUBLIC_URL (callback check)
        self.wecom_http = wecom_http  # raw requests to WECOM_API_BASE (clock)
        self.checks: list[Check] = []
        self.token_ok: dict[str, bool] = {}
        self.env_file = ".env"

    def loaded(self) -> Settings:
        """The settings the checks read: given, or loaded by check_settings(), which runs first."""
        assert self.settings is not None, "check_settings() runs first"
        return self.settings

    def add(self, name: str, ok: bool, detail: str, fix: str = "", warning: bool = False) -> Check:
        c = Check(name, ok, detail, fix, warning)
        self.checks.append(c)
        return c

    # -- the checks -----------------------------------------------------------------------------
    def _unconfigured(self, is_set: Callable[[str], bool]) -> bool:
        """A line for each WeCom setting without which nothing reaches WeCom; True if any."""
        missing = [(name, label) for name, label in WECOM_REQUIRED if not is_set(name)]
        for name, label in missing:
            self.add(
                "settings",
                False,
                f"{name}: is not set (WeCom is not configured yet)",
                f"fill {label} on the console's 企业微信参数 page (/admin/wecom), or set {name} in the "
                "environment or .env",
            )
        return bool(missing)

    def check_settings(self) -> bool:

        if self.settings is None:
            try:
                self.settings = load(self.env, console=console_values(load(self.env)))  # the merged view
            except SettingsError as e:
                for variable, problem, fix in e.problems:  # every one, so one round fixes them all
                    self.add("settings", False, f"{variable}: {problem}", fix)
                if any(variable == "SECRET_KEY" for variable, _, _ in e.problems):
                    # the console's values are sealed with SECRET_KEY, so without it only the
                    # environment's count: list WeCom's missing ones in this same round
                    raw = sources(self.env)
                    self._unconfigured(lambda name: bool(raw.get(name, "").strip()))
                return False
        s = self.loaded()
        if self._unconfigured(lambda name: bool(getattr(s, name.lower()))):
            return False
        problems: list[tuple[str, str]] = []
        pub = urlsplit(s.public_url)
        real_wecom = s.wecom_api_base.rstrip("/") == DEFAULT_API_BASE
        if pub.path not in ("", "/"):
            problems.append(
                (
                    f"PUBLIC_URL has a path ({pub.path})",
                    "set PUBLIC_URL to the origin only, e.g. https://wq.example.com (WeCom's 可信域名 is a host)",
                )
            )
        if real_wecom and _is_local(pub.hostname or ""):
            problems.append(
                (
                    f"PUBLIC_URL {s.public_url} cannot be reached by WeCom",
                    "set PUBLIC_URL to this service's public https origin; its host is the app's 可信域名",
                )
            )
        elif real_wecom and _host_is_ip(pub.hostname or ""):
            problems.append(
                (
                    f"PUBLIC_URL uses an IP address ({pub.hostname})",
                    "WeCom accepts a domain name only as 可信域名 and 重定向URL: set PUBLIC_URL to https://your.domain",
                )
            )
        if len(s.secret_key) < 16:
            problems.append(
                (
                    "SECRET_KEY is shorter than 16 characters",
                    "set SECRET_KEY to a long random value, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
                )
            )
        if len(s.weiqian_api_token) < 16:
            problems.append(
                (
                    "WEIQIAN_API_TOKEN is shorter than 16 characters",
                    "set WEIQIAN_API_TOKEN to a long random value and give the same one to 微签",
                )
            )
        if s.wecom_contacts_secret and s.wecom_contacts_secret == s.wecom_app_secret:
            problems.append(
                (
                    "WECOM_CONTACTS_SECRET equals WECOM_APP_SECRET",
                    "WECOM_CONTACTS_SECRET is the 通讯录同步 Secret (管理工具 → 通讯录同步); leave it empty to use the app secret",
                )
            )
        if problems:
            for what, fix in problems:
                self.add("settings", False, what, fix)
        else:
            self.add(
                "settings",
                True,
                f"well-formed (PUBLIC_URL {s.public_url}, corp {s.wecom_corp_id}, agent {s.wecom_agent_id})",
            )
        return True

    def check_store_and_queue(self) -> None:
        # Own connections, not the process's store and queue: the doctor checks what the settings
        # name, and must not rebind anything another part of this process uses.
        s = self.loaded()
        where = s.database_url.split("@")[-1]
        try:
            database = connect(s.database_url)
            try:
                database.connect(reuse_if_open=True)
                database.execute_sql("SELECT 1").fetchone()
                applied = (
                    [r[0] for r in database.execute_sql("SELECT id FROM schema_migration").fetchall()]
                    if database.table_exists("schema_migration")
                    else []
                )
            finally:
                database.close()
        except Exception as e:
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
            self.add(
                "store",
                False,
                f"{where}: {type(e).__name__} {first}".rstrip(),
                "check DATABASE_URL (is PostgreSQL running, does the database exist, may this user connect?)",
            )
        else:
            state = (
                f"{len(applied)} migrations applied, latest {max(applied)}"
                if applied
                else "empty (tables are created on first `wqbot serve`)"
            )
            self.add("store", True, f"{where} answers; {state}")
        qwhere = s.queue_url.split("@")[-1]
        try:
            storage = make_huey(s.queue_url, name="wqbot-doctor").storage
            if hasattr(storage, "conn") and hasattr(storage.conn, "ping"):
                storage.conn.ping()
            else:
                storage.queue_size()
        except Exception as e:
            self.add(
                "queue",
                False,
                f"{qwhere}: {type(e).__name__} {str(e)[:160]}".rstrip(),
                "check QUEUE_URL (is Redis running and reachable?)",
            )
        else:
            self.add("queue", True, f"{qwhere} answers")

    def _client(self):

        return client_for(self.loaded())

    def check_tokens(self, fresh: bool = True) -> None:
        """`fresh`: a real gettoken per secret (a cached token proves nothing about the secret).
        The start-up self-check passes False: every process of a deployment starting at once would
        otherwise each ask WeCom, and the shared token is then proven by the calls that follow."""
        s = self.loaded()
        sets = [("app", "WECOM_APP_SECRET")]
        if s.wecom_contacts_secret:
            sets.append(("contacts", "WECOM_CONTACTS_SECRET"))
        client = self._client()
        for creds, var in sets:
            fetch = getattr(client, "_gettoken", None) if fresh else None
            try:
                fetch(creds) if fetch else client.token(creds)
            except Exception as e:
                self.token_ok[creds] = False
                self.add(f"gettoken ({var})", False, _describe(e), wecom_fix(e, var, creds))
            else:
                self.token_ok[creds] = True
                self.add(f"gettoken ({var})", True, "WeCom issued an access token")

    def check_agent(self) -> None:
        s = self.loaded()
        if not self.token_ok.get("app"):
            self.add("agent/get", False, "skipped: no token for WECOM_APP_SECRET", "fix the gettoken line above first")
            return
        try:
            agent = self._client().agent_get()
        except Exception as e:
            code = getattr(e, "errcode", None)
            if code in (40056, 301002, 50003):
                fix = (
                    "WECOM_AGENT_ID and WECOM_APP_SECRET must belong to the same app: copy AgentId and Secret "
                    "from 应用管理 → 自建应用 → (the 微签 app)"
                )
                if code == 50003:
                    fix = "the app is disabled: enable it under 应用管理 → 自建应用"
            else:
                fix = wecom_fix(e)
            self.add("agent/get", False, f"AgentId {s.wecom_agent_id}: {_describe(e)}", fix)
            return
        if agent.get("close"):
            self.add(
                "agent/get",
                False,
                f"app {agent.get('name', '')!r} (AgentId {s.wecom_agent_id}) is disabled",
                "enable it under 应用管理 → 自建应用",
            )
            return
        want = urlsplit(s.public_url).netloc
        have = (agent.get("redirect_domain") or "").strip().rstrip("/")
        name = agent.get("name", "")
        if not have:
            self.add(
                "可信域名",
                False,
                f"app {name!r} has no 可信域名 (redirect_domain)",
                f"set 应用管理 → 自建应用 → 网页授权及JS-SDK → 可信域名 to {want} (and verify the domain)",
            )
            return
        if have.lower() != want.lower():
            extra = ""
            pub = urlsplit(s.public_url)
            if pub.port in (80, 443) and have.lower() == (pub.hostname or "").lower():
                extra = f" (drop the default port: set PUBLIC_URL to {pub.scheme}://{pub.hostname})"
            self.add(
                "可信域名",
                False,
                f"app {name!r} trusts {have}, but PUBLIC_URL's host is {want} (port included)",
                f"set 应用管理 → 自建应用 → 网页授权及JS-SDK → 可信域名 to {want}, or PUBLIC_URL to match{extra}",
            )
            return
        note = ""
        if s.pc_url:
            note = f"; also set 企业微信授权登录 → Web网页 → 授权回调域 to {want} (WeCom does not report it)"
        self.add("可信域名", True, f"app {name!r} (AgentId {s.wecom_agent_id}) trusts {have}{note}")

    def check_directory(self) -> None:
        """The directory read exactly as `wqbot sync` does it: the same secret (directory_access)
        and the same first call, which decides the mode (read_departments)."""
        s = self.loaded()
        client = self._client()
        access = directory_access(s)
        if not self.token_ok.get(access.creds):
            self.add(
                "directory",
                False,
                f"sync reads the directory with {access.variable}, for which WeCom issued no token",
                f"fix the gettoken ({access.variable}) line above first",
            )
            return
        try:
            depts = read_departments(client)
        except ModeRefused as refused:
            e = refused.error
            if access.creds == "app":
                self.add(
                    "directory",
                    False,
                    f"the app secret cannot read the directory: {_describe(e)}",
                    "add the departments to sync to the app's 可见范围 under 应用管理 → 自建应用, "
                    "or set WECOM_CONTACTS_SECRET",
                )
                return
            # 48009: a new server IP may not read details with the 通讯录同步 secret (since 2022-08-15)
            try:
                ids = client.department_simplelist(creds="contacts")
            except Exception as e2:
                self.add("directory", False, f"department/simplelist: {_describe(e2)}", wecom_fix(e2))
                return
            detail = self._app_range(client)
            self.add(
                "directory",
                True,
                f"WECOM_CONTACTS_SECRET may not read details from this IP ({getattr(e, 'errcode', '')}, the "
                f"2022-08-15 rule): sync uses mode list_id (department/simplelist: {len(ids)} departments, "
                f"user/list_id), names and fields through the app secret within its 可见范围{detail}",
            )
            return
        except Exception as e:
            self.add("directory", False, f"{access.variable} cannot read the directory: {_describe(e)}", wecom_fix(e))
            return
        if access.creds == "app":
            if not depts:
                self.add(
                    "directory",
                    False,
                    "the app's 可见范围 contains no department",
                    "add the departments to sync to 应用管理 → 自建应用 → 可见范围, or set WECOM_CONTACTS_SECRET",
                )
                return
            self.add(
                "directory",
                True,
                f"no WECOM_CONTACTS_SECRET: sync uses mode list with the app secret, which reads the "
                f"{len(depts)} departments in the app's 可见范围",
            )
            return
        self.add(
            "directory",
            True,
            f"WECOM_CONTACTS_SECRET reads the whole directory ({len(depts)} departments): sync uses mode "
            "list (department/list + user/list)",
        )

    def _app_range(self, client) -> str:
        try:
            n = len(client.department_list())
            return f" ({n} departments visible)"
        except Exception as e:
            return f" (the app secret cannot read them: {_describe(e)})"

    def check_callback(self) -> None:

        s = self.loaded()
        urls = [
            (
                "callback",
                f"{s.public_url}/wecom/callback",
                s.wecom_token,
                s.wecom_aes_key,
                "应用管理 → 自建应用 → 接收消息 → 设置API接收",
                "WECOM_TOKEN / WECOM_AES_KEY",
            )
        ]
        if s.contacts_callback_enabled:
            urls.append(
                (
                    "contacts callback",
                    f"{s.public_url}/wecom/contacts/callback",
                    s.wecom_contacts_token,
                    s.wecom_contacts_aes_key,
                    "管理工具 → 通讯录同步 → 设置接收事件服务器",
                    "WECOM_CONTACTS_TOKEN / WECOM_CONTACTS_AES_KEY",
                )
            )
        http = self.http or httpx.Client(timeout=10, follow_redirects=False)
        for name, url, token, key, page, variables in urls:
            crypto = WeComCrypto(token, key, s.wecom_corp_id)
            probe = "wqbot-doctor-" + _secrets.token_hex(8)
            ts, nonce = str(int(time.time())), _secrets.token_hex(5)
            echostr = crypto.encrypt(probe)
            params = {
                "msg_signature": crypto.sign(ts, nonce, echostr),
                "timestamp": ts,
                "nonce": nonce,
                "echostr": echostr,
            }
            try:
                r = http.get(url, params=params)
            except httpx.HTTPError as e:
                tls = "certificate" in str(e).lower() or "ssl" in str(e).lower()
                self.add(
                    name,
                    False,
                    f"{url} is not reachable from here ({type(e).__name__})",
                    "install a valid certificate for PUBLIC_URL's host (nginx, docs/deploy.md)"
                    if tls
                    else "check DNS, nginx (docs/deploy.md) and the firewall for PUBLIC_URL; WeCom must reach it too",
                )
                continue
            if r.status_code == 200 and r.text == probe:
                self.add(name, True, f"{url} answered a signed URL verification (what {page} sends)")
            elif r.status_code == 403:
                self.add(
                    name,
                    False,
                    f"{url} refused our signature ({r.text[:80]!r})",
                    f"the service at PUBLIC_URL runs with other {variables}: is PUBLIC_URL pointing at this instance?",
                )
            elif r.status_code in (301, 302, 307, 308):
                self.add(
                    name,
                    False,
                    f"{url} redirects to {r.headers.get('location', '?')}",
                    "WeCom does not follow redirects: set PUBLIC_URL to the final origin (https, no redirect)",
                )
            else:
                self.add(
                    name,
                    False,
                    f"{url} answered HTTP {r.status_code} {r.text[:80]!r}",
                    "check that nginx passes /wecom/ to wqbot unchanged (docs/deploy.md) and the service is running",
                )

    def check_https(self) -> None:
        s = self.loaded()
        https_pages = [v for v, u in (("H5_URL", s.h5_url), ("PC_URL", s.pc_url)) if u.startswith("https://")]
        if https_pages and not s.public_url.startswith("https://"):
            self.add(
                "https",
                False,
                f"{' and '.join(https_pages)} {'use' if len(https_pages) > 1 else 'uses'} https "
                f"but PUBLIC_URL is {s.public_url}",
                "serve wqbot behind nginx with TLS (docs/deploy.md) and set PUBLIC_URL to https://…; "
                "run `wqbot serve --proxy-headers` so redirect URLs come out https",
            )
        elif s.public_url.startswith("https://"):
            self.add("https", True, "PUBLIC_URL is https")
        else:
            set_pages = [v for v, u in (("H5_URL", s.h5_url), ("PC_URL", s.pc_url)) if u]
            also = f", as {'are' if len(set_pages) > 1 else 'is'} {' and '.join(set_pages)}" if set_pages else ""
            self.add("https", True, f"PUBLIC_URL is http{also} (fine for an intranet test only)")

    def check_features(self) -> None:
        """What is off because a setting is empty or false: said here, not discovered by an
        employee's 503 (the same list `serve` logs at start-up, bot/server/selfcheck.py)."""
        s = self.loaded()
        if not s.wecom_enabled:
            self.add(
                "WECOM_ENABLED",
                True,
                "false: no directory sync, no pushes, no card updates; callbacks are answered but change nothing",
                "set WECOM_ENABLED=true (微签 form: 开启企业微信) when the corp goes live",
                warning=True,
            )
        if not s.h5_url:
            self.add(
                "H5_URL",
                False,
                "empty: an employee opening the app's H5 login gets 登录入口尚未配置 (HTTP 503)",
                "set H5_URL to 微签 H5's login page, e.g. https://sign.example.com/h5/#/pages/login/login_pro",
            )
        if not s.pc_url:
            self.add(
                "PC_URL",
                True,
                "empty: PC QR-code login is off",
                "set PC_URL to 微签 PC's address, e.g. https://sign.example.com/pc/, to turn it on",
                warning=True,
            )

    def check_env_file(self, path: str | os.PathLike = ".env") -> None:
        """The .env holds every secret: readable by the group or others, it leaks them."""
        p = Path(path)
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except FileNotFoundError:
            return
        except OSError as e:
            self.add(".env", False, f"{p} cannot be read ({e.strerror})", f"check the permissions of {p}")
            return
        if mode & 0o077:
            self.add(
                ".env",
                False,
                f"{p} is readable by {'others' if mode & 0o007 else 'its group'} (mode {mode:04o}) and holds secrets",
                f"chmod 600 {p} (and chown it to the user wqbot runs as)",
            )
        else:
            self.add(".env", True, f"{p} is private (mode {mode:04o})")

    def check_clock(self) -> None:
        s = self.loaded()
        http = self.wecom_http or httpx.Client(timeout=10)
        try:
            before = time.time()
            r = http.get(s.wecom_api_base.rstrip("/") + "/cgi-bin/getcallbackip")  # no token: just a Date header
            after = time.time()
        except httpx.HTTPError as e:
            self.add(
                "clock",
                False,
                f"could not ask WECOM_API_BASE for the time ({type(e).__name__})",
                "check outbound access to WECOM_API_BASE",
            )
            return
        date = r.headers.get("date")
        if not date:
            self.add("clock", False, "WeCom's answer carried no Date header", "check WECOM_API_BASE")
            return
        try:
            remote = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            self.add("clock", False, f"WeCom's Date header is unreadable ({date[:40]!r})", "check WECOM_API_BASE")
            return
        skew = (before + after) / 2 - remote
        if abs(skew) > CLOCK_SKEW_LIMIT:
            self.add(
                "clock",
                False,
                f"this server's clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} WeCom's",
                "enable time sync (`timedatectl set-ntp true`, chrony or systemd-timesyncd)",
            )
        else:
            self.add("clock", True, f"within {max(1, round(abs(skew)))} s of WeCom's")

    # -- running ----------------------------------------------------------------------------------
    def run(self) -> list[Check]:
        if not self.check_settings():
            return self.checks
        self.check_store_and_queue()
        self.check_env_file(self.env_file)
        self.check_features()
        self.check_https()
        self.check_tokens()
        self.check_agent()
        self.check_directory()
        self.check_callback()
        self.check_clock()
        return self.checks


def main(args=None, out=None) -> int:
    out = out or sys.stdout
    doctor = Doctor(env=None if args is None or not getattr(args, "env", None) else args.env)
    checks = doctor.run()

    for c in checks:
        print(redact(c.line()), file=out)
    failed = [c for c in checks if not c.ok]
    warned = [c for c in checks if c.ok and c.warning]
    note = f" ({len(warned)} with a warning)" if warned else ""
    print(
        f"{len(checks) - len(failed)} passed{note}, {len(failed)} failed"
        if failed
        else f"all {len(checks)} checks passed{note}",
        file=out,
    )
    out.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(None))
