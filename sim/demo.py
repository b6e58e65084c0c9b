"""`wqbot demo [--keep]`: the whole product end to end on this machine, no WeCom account needed.

It starts the emulator and a small 微签 stand-in (webhook receiver and H5/PC landing pages) on
free loopback ports in this process, and `wqbot serve` as a child process with the embedded SQLite
store and queue in a temporary folder, every WeCom origin pointing at the emulator. Then it tours:

0. console set-up       wqbot starts with no WeCom settings (setup mode); the 企业微信参数 form on
                         /admin/wecom is filled and saved through the console's own HTTP endpoints
                         (checked against WeCom first) with 开启企业微信 on; the full sync follows
1. URL verification      the console's echostr check on both callback URLs
2. full sync             `wqbot sync --full`; the org API lists exactly the emulator's directory
3. live change_contact   a member joins and is renamed in the emulator; wqbot's change feed shows both
4. 待我处理 click         a member taps the menu item; wqbot answers with a passive reply
5. approval card         POST /api/v1/notifications (approve) to three people; three cards arrive
6. 同意                  one taps 同意: their card greys out, the other two are updated, and the
                         signed task.action webhook reaches 微签
7. H5 OAuth login        /oauth/h5 → the emulator's authorize page → a member picked → H5 with a
                         ticket → POST /api/v1/tickets/validate answers once, then 410
8. reminder              a task due in 18-19 hours, to be reminded 8 hours before; the emulator's
                         clock jumps there: each recipient gets one 《…》将于 … 截止 reminder
9. expiry                the clock jumps past the deadline: every card shows 已过期, 微签 gets the
                         signed task.expired webhook
10. 工作台 tile           `wqbot workbench push`; a new task makes a member's 待审批 1, they tap 同意
                         and it goes back to 0

Each step prints its time. A step whose feature is not in this build prints "skipped". Exit 0 when
every step that ran passed; everything is stopped and removed afterwards unless --keep.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from bot.notify.webhook import check_signature

from .app import create_app
from .config import SimConfig
from .server import ServerThread, bind
from .state import Sim

CST = timezone(timedelta(hours=8))  # 微签's deadlines are China time
WAIT = 30.0  # seconds any one step may wait for wqbot's queue
STRIPPED = ("WECOM_", "WEIQIAN_", "SYNC_", "ADMIN_", "PROMETHEUS_", "WQBOT_")
STRIPPED_EXACT = ("DATABASE_URL", "QUEUE_URL", "PUBLIC_URL", "H5_URL", "PC_URL", "SECRET_KEY")


class StepFailed(Exception):
    pass


def missing(*modules: str) -> str | None:
    """The first module of a feature that is not in this build."""
    for m in modules:
        try:
            if importlib.util.find_spec(m) is None:
                return m
        except ModuleNotFoundError:
            return m
    return None


class WeiqianStandIn:
    """微签's side: receives signed webhooks, and lands H5/PC logins (and redeems the ticket for a person)."""

    def __init__(self, secret: str, clock=time.time):
        self.secret, self.clock = secret, clock  # the demo's world runs on the emulator's clock
        self.webhooks: list[dict] = []
        self.wqbot_url = ""
        self.api_token = ""
        self.app = Starlette(
            routes=[
                Route("/webhook", self.webhook, methods=["POST"]),
                Route("/webhooks", self.list_webhooks, methods=["GET"]),
                Route("/h5/", self.landing, methods=["GET"]),
                Route("/pc/", self.landing, methods=["GET"]),
                Route("/redeem", self.redeem, methods=["POST"]),
            ]
        )

    async def webhook(self, request: Request) -> Response:
        body = await request.body()
        refused = check_signature(self.secret, request.headers.get("x-wqbot-signature", ""), body, self.clock())
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        self.webhooks.append(
            {
                "event": request.headers.get("x-wqbot-event"),
                "delivery": request.headers.get("x-wqbot-delivery"),
                "signature_ok": refused is None,
                "signature_refused": refused,
                "body": data,
                "at": time.time(),
            }
        )
        return JSONResponse({"ok": True})

    async def list_webhooks(self, request: Request) -> Response:
        return JSONResponse({"webhooks": self.webhooks})

    async def landing(self, request: Request) -> HTMLResponse:
        return HTMLResponse("""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>微签（演示）</title></head>
<body style="font-family:sans-serif;max-width:560px;margin:40px auto"><h1>微签（演示替身）</h1>
<p id="status">正在用登录票据换取身份…</p><pre id="who"></pre><script>
const hashQuery = (location.hash.split("?")[1] || "");
const ticket = new URLSearchParams(hashQuery).get("ticket") || new URLSearchParams(location.search).get("ticket");
if (!ticket) { document.getElementById("status").textContent = "地址里没有 ticket"; }
else fetch("/redeem", {method: "POST", headers: {"Content-Type": "application/json"},
                       body: JSON.stringify({ticket})})
  .then(r => r.json().then(j => [r.status, j])).then(([s, j]) => {
    document.getElementById("status").textContent = s === 200 ? "登录成功（票据已兑换，仅可使用一次）" : "票据无效：" + s;
    document.getElementById("who").textContent = JSON.stringify(j, null, 2); });
</script></body></html>""")

    async def redeem(self, request: Request) -> Response:
        data = json.loads(await request.body() or b"{}")
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.post(
                self.wqbot_url + "/api/v1/tickets/validate",
                json={"ticket": data.get("ticket", "")},
                headers={"Authorization": f"Bearer {self.api_token}"},
            )
        return JSONResponse(r.json(), status_code=r.status_code)


class Demo:
    def __init__(self, users: int = 300, departments: int = 20, seed: int = 2026, out=None):
        self.out = out or sys.stdout
        self.tmp = Path(tempfile.mkdtemp(prefix="wqbot-demo-"))
        self.api_token = secrets.token_urlsafe(24)
        self.webhook_secret = secrets.token_urlsafe(24)
        self.admin_password = secrets.token_urlsafe(12)  # the console login `--keep` prints
        wq_sock = bind()
        self.wq_port = wq_sock.getsockname()[1]
        wq_sock.close()  # `wqbot serve` binds it again a moment later
        self.wqbot = f"http://127.0.0.1:{self.wq_port}"
        self.cfg = SimConfig(
            users=users,
            departments=departments,
            seed=seed,
            callback_url=f"{self.wqbot}/wecom/callback",
            contacts_callback_url=f"{self.wqbot}/wecom/contacts/callback",
            redirect_domain=f"127.0.0.1:{self.wq_port}",
            callback_retry_interval=0.5,
        )
        self.sim = Sim(self.cfg)
        self.weiqian = WeiqianStandIn(self.webhook_secret, clock=self.sim.clock.now)
        self.sim_server = ServerThread(create_app(sim=self.sim))
        self.weiqian_server = ServerThread(self.weiqian.app)
        self.proc: subprocess.Popen | None = None
        self.state: dict = {}
        self.http = httpx.Client(timeout=30)

    # -- plumbing ------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    @property
    def sim_url(self) -> str:
        return self.sim_server.url

    def env(self) -> dict:
        base = {k: v for k, v in os.environ.items() if not k.startswith(STRIPPED) and k not in STRIPPED_EXACT}
        # No WeCom values: the admin enters them on /admin/wecom (the first step), as 微签's admin would.
        base.update(
            {
                "ADMIN_PASSWORD": self.admin_password,
                "WECOM_API_BASE": self.sim_url,
                "WECOM_OAUTH_BASE": self.sim_url,
                "WECOM_SSO_BASE": self.sim_url,
                "PUBLIC_URL": self.wqbot,
                "H5_URL": f"{self.weiqian_server.url}/h5/#/pages/login/login_pro",
                "PC_URL": f"{self.weiqian_server.url}/pc/",
                "DATABASE_URL": f"sqlite:///{self.tmp / 'wqbot.db'}",
                "QUEUE_URL": f"sqlite:///{self.tmp / 'queue.db'}",
                "SECRET_KEY": secrets.token_urlsafe(32),
                "WEIQIAN_API_TOKEN": self.api_token,
                "WEIQIAN_WEBHOOK_URL": f"{self.weiqian_server.url}/webhook",
                "WEIQIAN_WEBHOOK_SECRET": self.webhook_secret,
                "WQBOT_LOG_FORMAT": "text",
                "WQBOT_QUEUE_NAME": f"wqbot-demo-{self.wq_port}",
                # wqbot follows the emulator's clock: the demo jumps it to show reminders and expiry
                "SIM_CLOCK_URL": f"{self.sim_url}/sim/clock",
            }
        )
        return base

    def wq(self, method: str, path: str, **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        if path.startswith("/api/"):
            headers["Authorization"] = f"Bearer {self.api_token}"
        return self.http.request(method, self.wqbot + path, headers=headers, **kw)

    def simc(self, method: str, path: str, **kw) -> httpx.Response:
        return self.http.request(method, self.sim_url + path, **kw)

    def start(self) -> None:
        self.sim_server.start()
        self.weiqian_server.start()
        self._env = self.env()
        self.weiqian.wqbot_url, self.weiqian.api_token = self.wqbot, self.api_token
        self._log = open(self.tmp / "serve.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(self.wq_port)],
            cwd=self.tmp,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StepFailed(f"wqbot serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.http.get(self.wqbot + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise StepFailed("wqbot serve did not answer /healthz within 60 s:\n" + self.log_tail())

    def log_tail(self, n: int = 3000) -> str:
        try:
            return (self.tmp / "serve.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for srv in (self.sim_server, self.weiqian_server):
            if srv.thread.is_alive():
                srv.stop()
        self.http.close()
        if getattr(self, "_log", None):
            self._log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def wait_for(self, what: str, check, timeout: float = WAIT, every: float = 0.1):
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise StepFailed(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(every)

    def calls_since(self, seq: int) -> dict:
        calls = self.simc("GET", "/sim/calls", params={"since": seq, "limit": 100000}).json()["calls"]
        out: dict = {}
        for c in calls:
            out[c["api"]] = out.get(c["api"], 0) + 1
        return out

    def call_seq(self) -> int:
        return self.simc("GET", "/sim").json()["calls"]

    def feed_next(self) -> int:
        after = 0
        while True:
            r = self.wq("GET", "/api/v1/org/changes", params={"after": after, "limit": 1000}).json()
            if not r["changes"]:
                return after
            after = r["next"]

    def members(self, n: int, skip: int = 0) -> list[dict]:
        users = self.simc("GET", "/sim/users", params={"status": 1, "limit": n + skip + 1}).json()["users"]
        return users[skip + 1 : skip + 1 + n]  # not the CEO: keep the demo's people ordinary staff

    def org_users(self) -> list[dict]:
        users, cursor = [], None
        while True:
            page = self.wq("GET", "/api/v1/org/users", params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
            if page.status_code != 200:
                raise StepFailed(f"GET /api/v1/org/users: {page.status_code} {page.text[:300]}")
            body = page.json()
            users += body["users"]
            cursor = body.get("next_cursor")
            if not cursor:
                return users

    # -- the steps ------------------------------------------------------------------------
    def step_console_setup(self) -> str:
        c = self.cfg
        r = self.wq("POST", "/wecom/callback?msg_signature=x&timestamp=1&nonce=n", content=b"<xml/>")
        if r.status_code != 503 or "not configured yet" not in r.text:
            raise StepFailed(f"before set-up, /wecom/callback answered {r.status_code} {r.text[:200]!r}")
        page = self.wq("GET", "/admin/login").text
        nonce = re.search(r'name="login_nonce" value="([^"]+)"', page)
        if nonce is None:
            raise StepFailed("the console's login page has no password form")
        r = self.wq("POST", "/admin/login", data={"login_nonce": nonce.group(1), "password": self.admin_password})
        if r.status_code != 303:
            raise StepFailed(f"console login: HTTP {r.status_code}")
        csrf = re.search(r'name="csrf" value="([^"]+)"', self.wq("GET", "/admin/wecom").text)
        if csrf is None:
            raise StepFailed("the 企业微信参数 page has no form")
        form = {
            "csrf": csrf.group(1),
            "WECOM_CORP_ID": c.corp_id,  # 企业ID
            "WECOM_AGENT_ID": str(c.agent_id),  # 应用ID
            "WECOM_APP_SECRET": c.app_secret,  # 自建应用密钥
            "WECOM_CONTACTS_SECRET": c.contacts_secret,  # 通讯录密钥
            "WECOM_TOKEN": c.token,
            "WECOM_AES_KEY": c.aes_key,
            "WECOM_CONTACTS_TOKEN": c.contacts_token,
            "WECOM_CONTACTS_AES_KEY": c.contacts_aes_key,
            "SYNC_MATCH_FIELD": "userid",  # 公有属性
            "WECOM_ENABLED": "on",  # 开启企业微信
        }
        t0 = time.perf_counter()
        r = self.wq("POST", "/admin/wecom", data=form)
        if r.status_code != 303 or "wecom_saved" not in r.headers.get("location", ""):
            errors = re.findall(r'class="error[^"]*"[^>]*>([^<]+)<', r.text)
            raise StepFailed(f"saving 企业微信参数: HTTP {r.status_code}: {'; '.join(errors) or r.text[:300]}")
        want = len(self.sim.directory.users)
        self.wait_for("the sync 开启企业微信 starts", lambda: len(self.org_users()) == want, every=0.3)
        return (
            "setup mode until then (/wecom/callback: 503 not configured yet); 企业微信参数 saved through "
            f"/admin/wecom after its WeCom checks passed, 开启企业微信 on; the full sync it started brought "
            f"{want} members in {time.perf_counter() - t0:.1f} s"
        )

    def step_url_verification(self) -> str:
        out = []
        for target, label in (("app", "接收消息"), ("contacts", "通讯录同步")):
            r = self.simc("POST", "/sim/verify-url", json={"target": target}).json()
            if not r["ok"]:
                raise StepFailed(f"{label} URL {r['url']}: {r['error']} (HTTP {r['status']}, body {r['body']!r})")
            out.append(f"{label} {r['ms']:.0f} ms")
        return "both callback URLs answered the encrypted echostr with its plaintext (" + ", ".join(out) + ")"

    def step_full_sync(self) -> str:
        seq = self.call_seq()
        for attempt in range(3):
            r = subprocess.run(
                [sys.executable, "-m", "bot.cli", "sync", "--full"],
                cwd=self.tmp,
                env=self._env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if r.returncode == 0:
                break
            if r.returncode == 1 and "lease" in (r.stderr + r.stdout).lower() and attempt < 2:
                time.sleep(2)  # the periodic sync holds the lease: let it finish
                continue
            raise StepFailed(f"wqbot sync --full exited {r.returncode}:\n{r.stdout[-1500:]}{r.stderr[-1500:]}")
        users, cursor = [], None
        while True:
            page = self.wq("GET", "/api/v1/org/users", params={"limit": 1000, **({"cursor": cursor} if cursor else {})})
            if page.status_code != 200:
                raise StepFailed(f"GET /api/v1/org/users: {page.status_code} {page.text[:300]}")
            body = page.json()
            users += body["users"]
            cursor = body.get("next_cursor")
            if not cursor:
                break
        depts = self.wq("GET", "/api/v1/org/departments").json()["departments"]
        sim_users = {u.userid for u in self.sim.directory.users.values()}
        got = {u["userid"] for u in users}
        if got != sim_users:
            raise StepFailed(
                f"the store has {len(got)} members, the emulator {len(sim_users)}: "
                f"missing {sorted(sim_users - got)[:5]}, extra {sorted(got - sim_users)[:5]}"
            )
        if len(depts) != len(self.sim.directory.departments):
            raise StepFailed(
                f"the store has {len(depts)} departments, the emulator {len(self.sim.directory.departments)}"
            )
        calls = self.calls_since(seq)
        shown = ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
        return (
            f"{len(users)} members and {len(depts)} departments in wqbot's store, exactly the emulator's "
            f"({sum(calls.values())} WeCom API calls: {shown})"
        )

    def step_change_contact(self) -> str:
        after = self.feed_next()
        dept = next(iter(self.sim.directory.children[1]), 1)
        created = self.simc(
            "POST",
            "/sim/users",
            json={
                "userid": "xinyuangong",
                "name": "辛园工",
                "department": [dept],
                "position": "实习生",
                "mobile": "13912345678",
            },
        )
        if created.status_code != 201:
            raise StepFailed(f"the emulator refused the new member: {created.text}")
        cb = created.json()["callbacks"][0]
        if cb["status"] != 200:
            raise StepFailed(f"create_user callback: HTTP {cb['status']} {cb['error'] or cb['body']}")
        renamed = self.simc("PATCH", "/sim/users/xinyuangong", json={"new_userid": "xin.yuangong"}).json()
        cb2 = renamed["callbacks"][0]
        if cb2["status"] != 200:
            raise StepFailed(f"update_user (NewUserID) callback: HTTP {cb2['status']} {cb2['error'] or cb2['body']}")

        def feed():
            r = self.wq("GET", "/api/v1/org/changes", params={"after": after, "limit": 100}).json()["changes"]
            kinds = {(c["kind"], c["id"]) for c in r}
            if ("user.created", "xinyuangong") in kinds and any(k == "user.renamed" for k, _ in kinds):
                return r
            return None

        changes = self.wait_for("user.created and user.renamed in /api/v1/org/changes", feed)
        kinds = ", ".join(f"{c['kind']} {c['id']} (seq {c['seq']})" for c in changes if c["kind"].startswith("user."))
        return (
            f"辛园工 joined (create_user → HTTP 200) and was renamed xinyuangong → xin.yuangong (update_user with "
            f"NewUserID → HTTP 200); the change feed shows {kinds}"
        )

    def step_pending_click(self) -> str:
        who = self.members(1)[0]
        r = self.simc("POST", "/sim/send", json={"userid": who["userid"], "type": "click", "key": "pending"}).json()
        if r["status"] != 200:
            raise StepFailed(f"click callback: HTTP {r['status']} {r['error'] or r['body']}")
        reply = r.get("reply_fields")
        if not reply:
            raise StepFailed(f"no passive reply to the 待我处理 click ({r.get('reply_error') or 'empty body'})")
        if reply.get("MsgType") == "text":
            shown = reply.get("Content", "").replace("\n", " ")[:60]
        else:
            items = (reply.get("Articles") or {}).get("item") or []
            items = items if isinstance(items, list) else [items]
            shown = f"{reply.get('MsgType')}: " + "; ".join(i.get("Title", "") for i in items)[:60]
        return f"{who['name']} tapped 待我处理; wqbot answered in {r['ms']:.0f} ms with an encrypted reply: “{shown}”"

    def step_push_card(self) -> str:
        people = self.members(3, skip=1)
        initiator = self.members(1)[0]
        nid, task = f"wq-demo-{secrets.token_hex(4)}", f"T-DEMO-{secrets.token_hex(3).upper()}"
        body = {
            "id": nid,
            "type": "approve",
            "task_id": task,
            "title": "采购合同-2026-001",
            "description": f"{initiator['name']} 发起了审批，请处理",
            "initiator": initiator["userid"],
            "recipients": [p["userid"] for p in people],
            "url": f"/pages/task/task_detail?id={task}",
        }
        seq = self.call_seq()
        self.post_and_wait_sent(body)
        cards = {}
        for p in people:
            msgs = self.simc("GET", "/sim/messages", params={"userid": p["userid"], "msgtype": "template_card"}).json()
            mine = [m for m in msgs["messages"] if m["task_id"]]
            if not mine:
                raise StepFailed(f"{p['name']} received no card")
            cards[p["userid"]] = mine[-1]["task_id"]
        card_ids = set(cards.values())
        self.state.update(people=people, notification=nid, task=task, card_ids=card_ids, card_of=cards)
        calls = self.calls_since(seq)
        return (
            f"POST /api/v1/notifications → 202; {', '.join(p['name'] for p in people)} each got a 同意/拒绝 card "
            f"(message/send ×{calls.get('message/send', 0)}, task_id {', '.join(sorted(card_ids))})"
        )

    def step_tap(self) -> str:
        if "people" not in self.state:
            raise StepFailed("no card was pushed in step 5")
        people, card_of = self.state["people"], self.state["card_of"]
        tapper = people[0]
        r = self.simc(
            "POST",
            "/sim/send",
            json={"userid": tapper["userid"], "type": "card", "task_id": card_of[tapper["userid"]], "key": "approve"},
        ).json()
        if r.get("status") != 200:
            raise StepFailed(f"tap callback: {r}")
        own = r.get("effect") or "no passive reply"

        def all_updated():
            states = [self.simc("GET", f"/sim/cards/{cid}").json() for cid in self.state["card_ids"]]
            return states if all(s["all_updated"] for s in states) else None

        states = self.wait_for("every card to be updated", all_updated)
        shown = {}
        for s in states:
            for uid, copy in s["copies"].items():
                shown[uid] = (copy["replace_name"] or copy["state"], copy["updated_by"])

        def webhook():
            for w in self.weiqian.webhooks:
                b = w["body"] or {}
                if b.get("notification_id") == self.state["notification"]:
                    return w
            return None

        hook = self.wait_for("the task.action webhook at the 微签 stand-in", webhook)
        b = hook["body"]
        if not hook["signature_ok"]:
            raise StepFailed("the webhook's X-Wqbot-Signature does not verify with WEIQIAN_WEBHOOK_SECRET")
        if (hook["event"], b.get("action"), b.get("userid"), b.get("task_id")) != (
            "task.action",
            "approve",
            tapper["userid"],
            self.state["task"],
        ):
            raise StepFailed(f"unexpected webhook: {hook}")
        others = "; ".join(f"{p['name']}: “{shown[p['userid']][0]}” ({shown[p['userid']][1]})" for p in people[1:])
        return (
            f"{tapper['name']} tapped 同意 → {own} (passive reply); {others}; webhook task.action approve "
            f"signed ✓ delivery {hook['delivery'][:8]}…"
        )

    def step_login(self) -> str:
        who = self.members(1, skip=2)[0]
        with httpx.Client(timeout=15, follow_redirects=False) as browser:
            r = browser.get(self.wqbot + "/oauth/h5", params={"next": "/pages/index/index"})
            if r.status_code != 302 or not r.headers["location"].startswith(
                self.sim_url + "/connect/oauth2/authorize?"
            ):
                raise StepFailed(f"/oauth/h5 answered {r.status_code} → {r.headers.get('location')}")
            authorize = r.headers["location"].split("#", 1)[0]
            page = browser.get(authorize)
            if page.status_code != 200 or page.headers.get("x-sim-errcode"):
                raise StepFailed(f"the authorize page refused wqbot's URL: {page.text[:400]}")
            picked = browser.get(authorize + "&sim_userid=" + who["userid"])  # the person taps their name
            callback = picked.headers.get("location", "")
            if picked.status_code != 302 or not callback.startswith(self.wqbot + "/oauth/h5/callback?"):
                raise StepFailed(f"after picking a member: {picked.status_code} → {callback}")
            landed = browser.get(callback)
            target = landed.headers.get("location", "")
            if landed.status_code != 302 or not target.startswith(self.weiqian_server.url + "/h5/"):
                raise StepFailed(f"/oauth/h5/callback answered {landed.status_code}: {landed.text[:300] or target}")
        parts = urlsplit(target)
        query = parts.fragment.split("?", 1)[1] if "?" in parts.fragment else parts.query
        ticket = (parse_qs(query).get("ticket") or [None])[0]
        if not ticket:
            raise StepFailed(f"no ticket in {target}")
        first = self.wq("POST", "/api/v1/tickets/validate", json={"ticket": ticket})
        again = self.wq("POST", "/api/v1/tickets/validate", json={"ticket": ticket})
        ident = first.json() if first.status_code == 200 else {}
        if first.status_code != 200 or ident.get("userid") != who["userid"] or ident.get("via") != "h5":
            raise StepFailed(f"tickets/validate: {first.status_code} {first.text[:300]}")
        if again.status_code != 410:
            raise StepFailed(f"a second validation answered {again.status_code}, not 410")
        return (
            f"{who['name']} went /oauth/h5 → the emulator's authorize page → picked → /oauth/h5/callback → "
            f"H5 with a ticket; tickets/validate → 200 {{userid {ident['userid']}, via h5}}, then 410"
        )

    # -- follow-up: the emulator's clock jumps (wqbot follows it through SIM_CLOCK_URL) ----------
    def sim_now(self) -> float:
        return float(self.simc("GET", "/sim/clock").json()["now"])

    def jump_to(self, at: float) -> float:
        adv = max(0.0, at - self.sim_now())
        self.simc("POST", "/sim/clock", json={"advance": adv})
        return adv

    def notify(
        self, people: list[dict], title: str, deadline: float | None = None, remind_before_hours: float | None = None
    ) -> tuple[str, str]:
        nid, task = f"wq-demo-{secrets.token_hex(4)}", f"T-DEMO-{secrets.token_hex(3).upper()}"
        body: dict[str, object] = {
            "id": nid,
            "type": "approve",
            "task_id": task,
            "title": title,
            "recipients": [p["userid"] for p in people],
            "url": f"/pages/task/task_detail?id={task}",
        }
        if deadline is not None:
            body["deadline"] = datetime.fromtimestamp(deadline, CST).isoformat()
        if remind_before_hours is not None:
            body["remind_before_hours"] = remind_before_hours
        self.post_and_wait_sent(body)
        return nid, task

    def post_and_wait_sent(self, body: dict) -> dict:
        """POST the notification as 微签 would, and wait until its push has finished: sent to all."""
        r = self.wq("POST", "/api/v1/notifications", json=body)
        if r.status_code != 202:
            raise StepFailed(f"POST /api/v1/notifications: {r.status_code} {r.text[:300]}")

        def finished():
            st = self.wq("GET", f"/api/v1/notifications/{body['id']}").json()
            return st if st.get("status") in ("sent", "partial", "failed", "done") else None

        status = self.wait_for("the push to finish (GET /api/v1/notifications/{id})", finished)
        if status["status"] != "sent":
            raise StepFailed(f"notification status {status['status']}: {status.get('recipients')}")
        return status

    def step_reminder(self) -> str:
        people = self.members(2, skip=5)
        # due within a day (the emulator's card response codes last 24 h), on the hour; reminded 8 h before
        deadline = (self.sim_now() // 3600 + 19) * 3600
        nid, task = self.notify(people, "采购合同", deadline, remind_before_hours=8)
        adv = self.jump_to(deadline - 8 * 3600 + 30)

        def reminded():
            got = {}
            for p in people:
                msgs = self.simc("GET", "/sim/messages", params={"userid": p["userid"], "msgtype": "textcard"})
                if not msgs.json()["messages"]:
                    return None
                got[p["userid"]] = msgs.json()["messages"]
            return got

        got = self.wait_for("the reminders", reminded)
        if any(len(v) != 1 for v in got.values()):
            raise StepFailed(f"a member got more than one reminder: {got}")
        text = next(iter(got.values()))[0]["content"]["description"]
        self.state.update(remind_people=people, remind_task=task, remind_notification=nid, deadline=deadline)
        return f"clock +{adv / 3600:.0f} h → {', '.join(p['name'] for p in people)} each got one reminder: “{text}”"

    def step_expiry(self) -> str:
        if "remind_task" not in self.state:
            raise StepFailed("no task from the reminder step")
        adv = self.jump_to(self.state["deadline"] + 30)
        cards = self.simc("GET", "/sim/messages", params={"userid": self.state["remind_people"][0]["userid"]})
        card_ids = {m["task_id"] for m in cards.json()["messages"] if m["task_id"] and m["msgtype"] == "template_card"}

        def all_expired():
            states = [self.simc("GET", f"/sim/cards/{cid}").json() for cid in card_ids]
            return states if states and all(s["all_updated"] for s in states) else None

        states = self.wait_for("every card to show 已过期", all_expired)
        shown = {c["replace_name"] for s in states for c in s["copies"].values()}

        def webhook():
            for w in self.weiqian.webhooks:
                if w["event"] == "task.expired" and (w["body"] or {}).get("task_id") == self.state["remind_task"]:
                    return w
            return None

        hook = self.wait_for("the task.expired webhook at the 微签 stand-in", webhook)
        if not hook["signature_ok"]:
            raise StepFailed("the webhook's X-Wqbot-Signature does not verify with WEIQIAN_WEBHOOK_SECRET")
        return (
            f"clock +{adv / 3600:.0f} h, past the deadline → every card shows “{'/'.join(sorted(shown))}” "
            f"(update_template_card); webhook task.expired signed ✓"
        )

    def step_tile(self) -> str:
        r = subprocess.run(
            [sys.executable, "-m", "bot.cli", "workbench", "push"],
            cwd=self.tmp,
            env=self._env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode != 0:
            raise StepFailed(f"wqbot workbench push exited {r.returncode}: {r.stderr[-500:]}")
        who = self.members(1, skip=8)[0]

        def tile(n: str):
            def check():
                users = self.simc("GET", "/sim/workbench", params={"userid": who["userid"]}).json()["users"]
                items = (users.get(who["userid"]) or {}).get("keydata", {}).get("items", [])
                return items if items and items[0]["data"] == n else None

            return check

        nid, task = self.notify([who], "框架协议续签")
        self.jump_to(self.sim_now() + 60)  # the next minute: the tile refresh runs
        one = self.wait_for("待审批 1 on the member's tile", tile("1"))
        msgs = self.simc("GET", "/sim/messages", params={"userid": who["userid"], "msgtype": "template_card"})
        card = msgs.json()["messages"][-1]["task_id"]
        tap = {"userid": who["userid"], "type": "card", "task_id": card, "key": "approve"}
        if self.simc("POST", "/sim/send", json=tap).json().get("status") != 200:
            raise StepFailed("the 同意 tap was not accepted")
        self.jump_to(self.sim_now() + 60)
        self.wait_for("待审批 0 on the member's tile", tile("0"))
        shown = " / ".join(f"{i['key']} {i['data']}" for i in one)
        return f"wqbot workbench push ✓; {who['name']}'s tile: {shown} → taps 同意 → 待审批 0 (set_workbench_data)"

    STEPS = [
        ("console set-up (企业微信参数, 开启企业微信)", "step_console_setup", ("bot.ops.wecom_page",)),
        ("URL verification", "step_url_verification", ()),
        ("full directory sync", "step_full_sync", ("bot.sync",)),
        ("live change_contact", "step_change_contact", ("bot.sync", "bot.handlers.contacts")),
        ("待我处理 click", "step_pending_click", ("bot.handlers.chat",)),
        ("approval card to three people", "step_push_card", ("bot.notify", "bot.api.notifications")),
        ("同意: every card updates, signed webhook arrives", "step_tap", ("bot.notify", "bot.handlers.cards")),
        ("H5 OAuth login → validated ticket", "step_login", ("bot.auth", "bot.api.tickets")),
        ("reminder before the deadline (clock jumps)", "step_reminder", ("bot.notify.reminders",)),
        ("expiry: every card 已过期, task.expired webhook", "step_expiry", ("bot.notify.reminders",)),
        ("工作台 tile: 待审批 1 → 0 after 同意", "step_tile", ("bot.workbench",)),
    ]

    def tour(self) -> bool:
        n = len(self.STEPS)
        ok = True
        for i, (title, method, needs) in enumerate(self.STEPS, 1):
            label = f"[{i}/{n}] {title}"
            gone = missing(*needs)
            if gone:
                self.say(f"{label} … skipped: {gone} not built yet")
                continue
            t0 = time.perf_counter()
            try:
                detail = getattr(self, method)()
            except (StepFailed, httpx.HTTPError, KeyError, ValueError) as e:
                self.say(f"{label} … FAILED after {time.perf_counter() - t0:.2f} s: {e}")
                log = self.log_tail(1500)
                if log:
                    self.say("   last lines of wqbot serve's log:\n   " + log.replace("\n", "\n   "))
                ok = False
                break
            self.say(f"{label} … ok in {time.perf_counter() - t0:.2f} s: {detail}")
        return ok


def _terminated(signum, frame) -> None:
    raise SystemExit(128 + signum)


def main(args) -> int:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the tour prints its own lines
    keep = bool(getattr(args, "keep", False))
    if threading.current_thread() is threading.main_thread():
        # `kill <pid>` (SIGTERM) cleans up like Ctrl-C: the finally below stops `wqbot serve` and
        # removes the folder, instead of orphaning both
        signal.signal(signal.SIGTERM, _terminated)
    demo = Demo()
    t0 = time.perf_counter()
    try:
        try:
            demo.start()
        except StepFailed as e:
            demo.say(f"wqbot demo: could not start: {e}")
            return 1
        demo.say(
            f"wqbot demo: emulator {demo.sim_url} ({len(demo.sim.directory.users)} members, "
            f"{len(demo.sim.directory.departments)} departments) · wqbot {demo.wqbot} · "
            f"微签 stand-in {demo.weiqian_server.url}"
        )
        demo.say(f"            store and queue: SQLite in {demo.tmp}; started in {time.perf_counter() - t0:.1f} s")
        ok = demo.tour()
        summary = demo.simc("GET", "/sim/calls/summary").json()
        counts = ", ".join(f"{k} {v['calls']}" for k, v in sorted(summary["apis"].items()))
        demo.say(
            f"wqbot demo: {'all steps passed' if ok else 'a step FAILED'} in {time.perf_counter() - t0:.1f} s; "
            f"WeCom API calls wqbot made: {summary['total']} ({counts})"
        )
        if keep:
            demo.say("")
            demo.say("Both are still running (Ctrl-C stops them and removes the folder):")
            demo.say(
                f"  wqbot          {demo.wqbot}   H5 login: {demo.wqbot}/oauth/h5 · PC login: {demo.wqbot}/wx/qrlogin"
            )
            demo.say(f"  WeCom emulator {demo.sim_url}/   control API: {demo.sim_url}/sim")
            demo.say(f"  微签 stand-in   {demo.weiqian_server.url}/webhooks")
            demo.say(f"  API token      {demo.api_token}   (Authorization: Bearer … for {demo.wqbot}/api/v1/*)")
            demo.say(f"  admin console  {demo.wqbot}/admin   password: {demo.admin_password}")
            demo.say(f"  企业微信参数   {demo.wqbot}/admin/wecom")
            try:
                while demo.proc.poll() is None:
                    time.sleep(0.5)
                demo.say(f"wqbot serve exited with {demo.proc.returncode}")
            except KeyboardInterrupt:
                pass
        return 0 if ok else 1
    finally:
        demo.stop()
