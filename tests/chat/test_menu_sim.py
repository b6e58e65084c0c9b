"""`wqbot menu push|diff` against the WeCom emulator, and the pushed menu tapped end to end:
the emulator delivers the member's click or text to wqbot on a loopback port and decrypts the
passive reply as WeCom would."""

from __future__ import annotations

import httpx
import pytest

import settings as settings_mod
from bot.cli import build_parser
from bot.menus import build
from bot.menus import cli as menu_cli
from sim.server import ServerThread, bind
from tests.conftest import TEST_ENV


def run(*argv: str) -> int:
    return menu_cli.main(build_parser().parse_args(["menu", *argv]))


@pytest.fixture(scope="module")
def world():
    """The emulator (playing our corp and app) and wqbot, each on its own loopback port."""
    from bot.app import create_app
    from sim import SimConfig
    from sim import create_app as create_sim

    wq_sock, sim_sock = bind("127.0.0.1", 0), bind("127.0.0.1", 0)
    wqbot_url = f"http://127.0.0.1:{wq_sock.getsockname()[1]}"
    sim_url = f"http://127.0.0.1:{sim_sock.getsockname()[1]}"
    sim_app = create_sim(
        SimConfig(
            corp_id=TEST_ENV["WECOM_CORP_ID"],
            agent_id=int(TEST_ENV["WECOM_AGENT_ID"]),
            app_secret=TEST_ENV["WECOM_APP_SECRET"],
            contacts_secret=TEST_ENV["WECOM_CONTACTS_SECRET"],
            token=TEST_ENV["WECOM_TOKEN"],
            aes_key=TEST_ENV["WECOM_AES_KEY"],
            callback_url=f"{wqbot_url}/wecom/callback",
            callback_retries=0,
            redirect_domain=wqbot_url.split("//")[1],
            users=6,
            departments=2,
            seed=3,
        )
    )
    s = settings_mod.load(env={**TEST_ENV, "PUBLIC_URL": wqbot_url, "WECOM_API_BASE": sim_url}, dotenv=None)
    previous = settings_mod.get_settings()
    settings_mod.override(s)
    from bot.wecom import reset_clients

    reset_clients()
    try:
        with ServerThread(sim_app, sock=sim_sock), ServerThread(create_app(s, init_store=False), sock=wq_sock):
            yield {"settings": s, "sim": sim_app.state.sim, "sim_url": sim_url}
    finally:
        settings_mod.override(previous)
        reset_clients()


def test_push_then_diff_against_the_emulator(world, store, capsys):
    sim = world["sim"]
    sim.menu = None
    assert run("diff") == 1
    out = capsys.readouterr().out
    assert out.startswith("WeCom has no menu for agent 1000002") and "+ 待我处理  click  pending" in out

    assert run("push") == 0
    assert sim.menu == build(world["settings"])  # what the emulator stored is exactly what show prints
    capsys.readouterr()
    assert run("diff") == 0
    assert "already has this menu" in capsys.readouterr().out

    # someone edits the menu in the admin console: diff names the change
    sim.menu = {
        "button": [
            {"type": "click", "name": "待我处理", "key": "pending"},
            {"type": "click", "name": "帮助", "key": "help"},
        ]
    }
    assert run("diff") == 1
    out = capsys.readouterr().out.splitlines()
    assert "+ 进入微签  view  " + build(world["settings"])["button"][1]["url"] in out
    assert "  待我处理  click  pending" in out and "  帮助  click  help" in out


def test_the_emulator_accepts_what_show_prints(world, store):
    """The emulator applies WeCom's rules to menu/create (docs/wecom.md, "Menus") independently of ours."""
    menu = build(world["settings"])
    url = world["sim_url"]
    token = httpx.get(
        f"{url}/cgi-bin/gettoken",
        params={"corpid": TEST_ENV["WECOM_CORP_ID"], "corpsecret": TEST_ENV["WECOM_APP_SECRET"]},
    ).json()
    r = httpx.post(
        f"{url}/cgi-bin/menu/create", params={"access_token": token["access_token"], "agentid": 1000002}, json=menu
    )
    assert r.json()["errcode"] == 0


def tap(world, userid: str, **event) -> dict:
    r = httpx.post(f"{world['sim_url']}/sim/send", json={"userid": userid, **event}, timeout=10)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["status"] == 200 and not result["reply_error"], result
    return result["reply_fields"]


def test_members_tap_the_pushed_menu(world, store):
    sim = world["sim"]
    assert run("push") == 0
    member = next(u for u in sim.directory.users.values() if u.status == 1)
    keys = [b["key"] for b in sim.menu["button"] if b.get("type") == "click"]
    assert keys == ["pending", "help"]

    pending = tap(world, member.userid, type="click", key="pending")
    assert pending["MsgType"] == "text" and pending["Content"].startswith("暂无待办")
    assert pending["ToUserName"] == member.userid
    assert tap(world, member.userid, type="click", key="help")["Content"].startswith("微签助手可以帮你")
    assert tap(world, member.userid, type="text", content="ＰＥＮＤＩＮＧ")["Content"].startswith("暂无待办")
    assert tap(world, member.userid, type="text", content="在吗")["Content"].startswith("微签助手可以帮你")


def test_a_task_sent_through_the_emulator_shows_in_pending(world, store, immediate_queue):
    sim = world["sim"]
    member = next(u for u in sim.directory.users.values() if u.status == 1)
    wqbot_url = world["settings"].public_url
    r = httpx.post(
        f"{wqbot_url}/api/v1/notifications",
        timeout=10,
        headers={"Authorization": f"Bearer {TEST_ENV['WEIQIAN_API_TOKEN']}"},
        json={
            "id": "wq-sim-1",
            "type": "sign",
            "task_id": "T-SIM-1",
            "title": "劳动合同-2026",
            "recipients": [member.userid],
            "url": "/pages/task/task_detail?id=T-SIM-1",
        },
    )
    assert r.status_code == 202, r.text
    reply = tap(world, member.userid, type="click", key="pending")
    assert reply["MsgType"] == "news" and int(reply["ArticleCount"]) == 1
    item = reply["Articles"]["item"]
    assert item["Title"] == "【待签署】劳动合同-2026"
    assert item["Url"] == f"{wqbot_url}/oauth/h5?next=%2Fpages%2Ftask%2Ftask_detail%3Fid%3DT-SIM-1"
