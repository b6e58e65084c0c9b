"""End to end in headless Chromium (Debian's `chromium`, driven over the DevTools protocol):

    browser → wqbot /oauth/h5 → the emulator's authorize page (sim) → a member is picked →
    /oauth/h5/callback → a stand-in 微签 H5 page (served here) → the page reads the ticket from
    its hash route and has its "backend" validate it at /api/v1/tickets/validate.

The same for the PC QR login (/wx/qrlogin → the emulator's SSO page → /wx/login → PC_URL).
Three real HTTP servers on 127.0.0.1 (wqbot, the emulator, the stand-in 微签), each under
uvicorn in a thread. Skipped, with the reason, only where Chromium cannot start.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import httpx
import pytest

import settings as settings_mod
from tests.auth.support import add_member
from tests.browser import Browser, chromium_path
from tests.conftest import TEST_ENV


@pytest.fixture(scope="module")
def browser():
    binary = chromium_path()
    if binary is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium; .ci/install-extras does it)")
    try:
        b = Browser(binary)
    except (RuntimeError, OSError, StopIteration, httpx.HTTPError) as e:
        pytest.skip(f"Chromium cannot start here: {e}")
    yield b
    b.close()


# -- servers ------------------------------------------------------------------------------------------
def bound_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


class Served:
    """An ASGI app under uvicorn in a thread, on a socket bound beforehand."""

    def __init__(self, app, sock: socket.socket):
        import uvicorn

        self.sock = sock
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


STAND_IN_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>微签 H5 (stand-in)</title></head>
<body><h1>微签</h1><pre id="result"></pre><script>
// What the 微签 H5 does with a hash route: the ticket is in the route's own query.
const route = location.hash.slice(1);
const [path, query] = [route.split("?")[0], route.split("?")[1] || ""];
const ticket = new URLSearchParams(query).get("ticket") || new URLSearchParams(location.search).get("ticket");
fetch("/backend/login", {method: "POST", headers: {"content-type": "application/json"},
                         body: JSON.stringify({ticket: ticket})})
  .then(r => r.json().then(body => ({status: r.status, body: body})))
  .then(x => { const out = Object.assign({status: x.status, route: path, search: location.search}, x.body);
               document.getElementById("result").textContent = JSON.stringify(out); });
</script></body></html>"""


def stand_in_weiqian(wqbot_url: str):
    """The 微签 side: an H5 page and a PC page that read the ticket, and the backend that
    validates it with wqbot (bearer WEIQIAN_API_TOKEN), as 微签's server would."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    async def page(request: Request):
        return HTMLResponse(STAND_IN_PAGE)

    async def backend_login(request: Request):
        ticket = (await request.json()).get("ticket")
        async with httpx.AsyncClient(timeout=10) as c:
            r = await c.post(
                f"{wqbot_url}/api/v1/tickets/validate",
                json={"ticket": ticket},
                headers={"Authorization": "Bearer " + TEST_ENV["WEIQIAN_API_TOKEN"]},
            )
        return JSONResponse({"validated": r.json(), "ticket": ticket}, status_code=r.status_code)

    return Starlette(
        routes=[
            Route("/h5/", page),
            Route("/pc/{rest:path}", page),
            Route("/backend/login", backend_login, methods=["POST"]),
        ]
    )


@pytest.fixture(scope="module")
def world():
    """wqbot + the WeCom emulator + a stand-in 微签, on three loopback ports."""
    from bot.app import create_app
    from sim import SimConfig
    from sim import create_app as create_sim

    wq_sock, sim_sock, wqsign_sock = bound_socket(), bound_socket(), bound_socket()
    wq_port, sim_port, h5_port = (s.getsockname()[1] for s in (wq_sock, sim_sock, wqsign_sock))
    wqbot_url, sim_url, weiqian_url = (f"http://127.0.0.1:{p}" for p in (wq_port, sim_port, h5_port))
    sim_cfg = SimConfig(
        corp_id=TEST_ENV["WECOM_CORP_ID"],
        agent_id=int(TEST_ENV["WECOM_AGENT_ID"]),
        app_secret=TEST_ENV["WECOM_APP_SECRET"],
        contacts_secret=TEST_ENV["WECOM_CONTACTS_SECRET"],
        token=TEST_ENV["WECOM_TOKEN"],
        aes_key=TEST_ENV["WECOM_AES_KEY"],
        redirect_domain=f"127.0.0.1:{wq_port}",
        users=6,
        departments=2,
        seed=7,
    )
    sim_app = create_sim(sim_cfg)
    s = settings_mod.load(
        env={
            **TEST_ENV,
            "PUBLIC_URL": wqbot_url,
            "WECOM_API_BASE": sim_url,
            "WECOM_OAUTH_BASE": sim_url,
            "WECOM_SSO_BASE": sim_url,
            "H5_URL": f"{weiqian_url}/h5/#/pages/login/login_pro",
            "PC_URL": f"{weiqian_url}/pc/",
        },
        dotenv=None,
    )
    servers = []
    try:
        servers.append(Served(sim_app, sim_sock))
        servers.append(Served(create_app(s, init_store=False), wq_sock))
        servers.append(Served(stand_in_weiqian(wqbot_url), wqsign_sock))
        yield {"settings": s, "wqbot": wqbot_url, "sim": sim_url, "weiqian": weiqian_url, "sim_app": sim_app}
    finally:
        for srv in reversed(servers):
            srv.stop()
        from bot.auth import domain
        from bot.wecom import reset_clients

        reset_clients()
        domain.forget()


def sim_members(world) -> list:
    sim = world["sim_app"].state.sim
    return [u for u in sim.directory.users.values() if u.status == 1 and sim.visible_user(u)]


def result(browser) -> dict:
    return json.loads(
        browser.wait_for(
            "document.getElementById('result') && document.getElementById('result').textContent",
            "the 微签 page's result",
        )
    )


def test_h5_login_in_chromium(browser, world, store):
    member = sim_members(world)[0]
    add_member(member.userid, member.name, departments=(1,), account=f"wq-{member.userid}")
    t0 = time.monotonic()
    browser.goto(f"{world['wqbot']}/oauth/h5?next=%2Fpages%2Ftask%2Ftask_detail%3Fid%3DT-1001")
    # the emulator's authorize page lists members; pick ours as a person would
    link = f'a.user[href*="sim_userid={member.userid}"]'
    browser.wait_for(f"!!document.querySelector('{link}')", "the emulator's authorize page")
    assert browser.evaluate("location.href").startswith(world["sim"] + "/connect/oauth2/authorize?")
    browser.evaluate(f"document.querySelector('{link}').click()")
    out = result(browser)
    assert out["status"] == 200, out
    assert out["validated"] == {
        "userid": member.userid,
        "name": member.name,
        "departments": [1],
        "account": f"wq-{member.userid}",
        "via": "h5",
    }
    assert out["route"] == "/pages/task/task_detail"  # next applied to the hash route
    assert out["search"] == ""  # the ticket travelled in the fragment only
    href = browser.evaluate("location.href")
    assert href.startswith(world["weiqian"] + "/h5/#/pages/task/task_detail?id=T-1001&ticket=")
    # the ticket is spent: 微签 replaying it gets 410
    r = httpx.post(
        f"{world['wqbot']}/api/v1/tickets/validate",
        json={"ticket": out["ticket"]},
        headers={"Authorization": "Bearer " + TEST_ENV["WEIQIAN_API_TOKEN"]},
    )
    assert r.status_code == 410
    # back to the authorize page and pick again: a fresh code, but the state is used up
    browser.evaluate("history.back()")
    browser.wait_for(f"!!document.querySelector('{link}')", "the authorize page again")
    browser.evaluate(f"document.querySelector('{link}').click()")
    browser.wait_for("document.body && document.body.innerText.includes('登录链接已被使用')", "the replay refusal page")
    assert time.monotonic() - t0 < 20


def test_pc_qr_login_in_chromium(browser, world, store):
    member = sim_members(world)[1]
    add_member(member.userid, member.name, departments=(1,))
    browser.goto(f"{world['wqbot']}/wx/qrlogin?next=%2Ftasks%2FT-7")
    link = f'a.user[href*="sim_userid={member.userid}"]'
    browser.wait_for(f"!!document.querySelector('{link}')", "the emulator's QR-login page")
    assert browser.evaluate("location.href").startswith(world["sim"] + "/wwlogin/sso/login?")
    browser.evaluate(f"document.querySelector('{link}').click()")
    out = result(browser)
    assert out["status"] == 200 and out["validated"]["via"] == "pc" and out["validated"]["userid"] == member.userid
    assert browser.evaluate("location.pathname") == "/pc/tasks/T-7"


def test_non_member_sees_the_chinese_page_in_chromium(browser, world, store):
    browser.goto(f"{world['wqbot']}/oauth/h5")
    browser.wait_for("!!document.querySelector('a.user[href*=\"sim_openid\"]')", "the emulator's authorize page")
    browser.evaluate("document.querySelector('a.user[href*=\"sim_openid\"]').click()")
    text = browser.wait_for(
        "document.body && document.body.innerText.includes('仅限本企业成员登录') && document.body.innerText",
        "the non-member page",
    )
    assert "原因" in text and browser.evaluate("location.pathname") == "/oauth/h5/callback"
    if os.environ.get("WQBOT_SCREENSHOTS"):
        browser.screenshot(os.path.join(os.environ["WQBOT_SCREENSHOTS"], "login-non-member.png"))
