"""The misconfiguration drills, each run against the `sim` emulator: the message names the right
fix, and `wqbot doctor` and `wqbot sync` agree on it (the same secret, the same console page).

wrong app secret · wrong contacts secret · 60020 on each secret · a wrong AES key of the right
length · H5_URL empty · WECOM_ENABLED=false."""

from __future__ import annotations

import dataclasses
import logging
import time

import httpx
import pytest

from bot.app import create_app as wqbot_app
from bot.callback import refusal
from bot.observability.logs import LogThrottle
from bot.ops.doctor import Doctor
from bot.ops.panels import status
from bot.server import stack
from bot.server.selfcheck import selfcheck
from bot.sync import run_sync
from bot.wecom import WeComClient, reset_clients
from sim import SimConfig, create_app
from sim.config import _dev_aes_key
from sim.server import ServerThread
from store.directory import User
from store.ops import OpsError

APP_PAGE, CONTACTS_PAGE = "应用管理 → 自建应用", "管理工具 → 通讯录同步"


@pytest.fixture
def emulator():
    cfg = SimConfig(corp_id="wwdrill00000000001", users=30, departments=4, seed=5, redirect_domain="wqbot.example.com")
    app = create_app(cfg)
    with ServerThread(app) as url:
        yield cfg, url
    reset_clients()


def on_sim(settings, cfg, url, **over):
    base = dict(
        wecom_api_base=url,
        wecom_corp_id=cfg.corp_id,
        wecom_app_secret=cfg.app_secret,
        wecom_contacts_secret=cfg.contacts_secret,
        wecom_enabled=True,
        h5_url="https://sign.example.com/h5/",
    )
    return dataclasses.replace(settings, **{**base, **over})


def doctor(s) -> dict:
    reset_clients()
    d = Doctor(settings=s)
    d.check_tokens()
    d.check_agent()
    d.check_directory()
    out: dict = {}
    for c in d.checks:
        out.setdefault(c.name, c)
    return out


def sync(s):
    reset_clients()
    return run_sync(s, trigger="test", client=WeComClient(s, sleep=lambda _: None))


def fault(url, **spec):
    r = httpx.post(f"{url}/sim/faults", json=spec)
    assert r.status_code == 201, r.text


def recent_errors() -> list[OpsError]:
    return list(OpsError.select())


def test_wrong_app_secret(settings, store, emulator):
    cfg, url = emulator
    s = on_sim(settings, cfg, url, wecom_app_secret="wrong-app-secret-0001")
    checks = doctor(s)
    token = checks["gettoken (WECOM_APP_SECRET)"]
    assert not token.ok and "40001" in token.detail
    assert token.fix.startswith("WECOM_APP_SECRET is wrong") and f"{APP_PAGE} → Secret" in token.fix
    assert (
        checks["gettoken (WECOM_CONTACTS_SECRET)"].ok and checks["directory"].ok
    )  # the directory is read with the other one
    # without a contacts secret the sync reads with the app secret, and says so
    run = sync(dataclasses.replace(s, wecom_contacts_secret=""))
    assert run.status == "failed" and "could not be read with WECOM_APP_SECRET" in run.reason
    assert "WECOM_APP_SECRET is wrong" in run.reason and APP_PAGE in run.reason and CONTACTS_PAGE not in run.reason


def test_wrong_contacts_secret(settings, store, emulator):
    cfg, url = emulator
    s = on_sim(settings, cfg, url, wecom_contacts_secret="wrong-contacts-secret-01")
    checks = doctor(s)
    token = checks["gettoken (WECOM_CONTACTS_SECRET)"]
    assert not token.ok and token.fix.startswith("WECOM_CONTACTS_SECRET is wrong") and CONTACTS_PAGE in token.fix
    directory = checks["directory"]  # doctor no longer says ✓ while sync fails
    assert not directory.ok and "WECOM_CONTACTS_SECRET" in directory.detail
    run = sync(s)
    assert (run.status, run.mode) == ("failed", "list")
    assert (
        "could not be read with WECOM_CONTACTS_SECRET" in run.reason and "WECOM_CONTACTS_SECRET is wrong" in run.reason
    )
    assert CONTACTS_PAGE in run.reason and APP_PAGE not in run.reason
    (error,) = [e for e in recent_errors() if e.source == "sync"]  # the console's 最近错误, with the same fix
    assert "WECOM_CONTACTS_SECRET is wrong" in error.hint and CONTACTS_PAGE in error.hint
    assert s.wecom_contacts_secret not in error.message + error.hint


def test_the_console_shows_a_failed_run_as_what_it_saw_and_its_error(settings, store, emulator):
    cfg, url = emulator
    s = on_sim(settings, cfg, url)
    assert sync(s).status == "ok"
    members = User.select().where(User.active).count()
    assert members > 0
    fault(url, path="department/list", errcode=60020, ip="203.0.113.7")
    assert sync(s).status == "failed"
    panel = status(s)
    assert panel["sync"]["counts"][0] == ("成员总数", f"未读取（库中现有 {members} 名在职成员，未改动）")
    assert any(e.source == "sync" and "企业可信IP" in e.hint for e in panel["errors"])  # 最近错误


def test_60020_on_the_contacts_secret_names_the_contacts_page_in_doctor_and_sync(settings, store, emulator):
    cfg, url = emulator
    s = on_sim(settings, cfg, url)
    fault(url, path="department/list", errcode=60020, ip="203.0.113.5")
    checks = doctor(s)
    directory = checks["directory"]
    want = f"add 203.0.113.5 to {CONTACTS_PAGE} → 企业可信IP"
    assert not directory.ok and "60020" in directory.detail and want in directory.fix, directory.fix
    run = sync(s)
    assert run.status == "failed"
    assert f"203.0.113.5 to 企业可信IP under {CONTACTS_PAGE} → 企业可信IP" in run.reason, run.reason
    assert f"{APP_PAGE} → 企业可信IP" not in run.reason + directory.fix
    assert sync(s).status == "failed"  # again: WeCom's errmsg differs per call, the console row does not
    (error,) = [e for e in recent_errors() if e.source == "sync"]
    assert f"{CONTACTS_PAGE} → 企业可信IP" in error.hint and error.count == 2
    assert error.message == "/cgi-bin/department/list: errcode 60020 (with WECOM_CONTACTS_SECRET)"


def test_60020_on_the_app_secret_names_the_app_page_in_doctor_and_sync(settings, store, emulator):
    cfg, url = emulator
    s = on_sim(settings, cfg, url)
    fault(url, path="agent/get", errcode=60020, ip="203.0.113.6")
    agent = doctor(s)["agent/get"]
    assert not agent.ok and f"add 203.0.113.6 to {APP_PAGE} → 企业可信IP" in agent.fix, agent.fix
    # no contacts secret: the directory is read with the app secret, so 60020 there is the app's page too
    fault(url, path="department/list", errcode=60020, ip="203.0.113.6")
    s = dataclasses.replace(s, wecom_contacts_secret="")
    directory = doctor(s)["directory"]
    assert not directory.ok and f"{APP_PAGE} → 企业可信IP" in directory.fix
    run = sync(s)
    assert run.status == "failed" and f"203.0.113.6 to 企业可信IP under {APP_PAGE} → 企业可信IP" in run.reason
    assert CONTACTS_PAGE not in run.reason + directory.fix


def test_wrong_aes_key_of_the_right_length_names_the_aes_key_in_answer_log_and_console(
    settings, store, emulator, caplog, monkeypatch
):
    cfg, url = emulator
    # 最近错误 takes one refusal per endpoint and check a minute: start this test's minute afresh,
    # whatever refusals earlier tests in this process made
    monkeypatch.setattr(refusal, "_recorded", LogThrottle(interval=60.0, max_keys=32))
    wrong = _dev_aes_key("not the console's")
    assert len(wrong) == 43 and wrong != cfg.aes_key
    s = on_sim(settings, cfg, url, wecom_token=cfg.token, wecom_aes_key=wrong)
    caplog.set_level(logging.INFO, logger="wqbot.callback")
    with ServerThread(stack(wqbot_app(s))) as ours:
        with httpx.Client(base_url=url) as c:
            assert c.patch("/sim/config", json={"callback_url": f"{ours}/wecom/callback"}).status_code == 200
            result = c.post("/sim/verify-url", json={"target": "app"}).json()
    assert result["status"] == 400 and not result["ok"], result  # WeCom's console: 回调URL验证失败
    body = result["body"]
    assert body.startswith("padding: ") and "fix: WECOM_AES_KEY is not the EncodingAESKey" in body
    assert "接收消息 → 设置API接收" in body and "WECOM_TOKEN is right" in body
    (record,) = [r for r in caplog.records if r.getMessage() == "callback refused"]
    assert record.check == "padding" and body.endswith(record.fix)  # the log carries the answer's fix
    deadline = time.monotonic() + 5
    while not recent_errors() and time.monotonic() < deadline:
        time.sleep(0.05)
    (error,) = recent_errors()
    assert error.source == "callback.app" and error.hint == record.fix
    assert wrong not in body + error.message + error.hint


def test_h5_url_empty(settings, store, emulator):
    cfg, url = emulator
    s = on_sim(settings, cfg, url, h5_url="", wecom_corp_id=cfg.corp_id)
    d = Doctor(settings=s)
    d.check_features()
    d.check_https()
    h5 = next(c for c in d.checks if c.name == "H5_URL")
    assert not h5.ok and "登录入口尚未配置" in h5.detail and h5.fix.startswith("set H5_URL to 微签 H5's login page")
    https = next(c for c in d.checks if c.name == "https")
    assert "H5_URL" not in https.detail  # no longer "as are H5_URL and PC_URL" when they are empty
    record = selfcheck(s, "serve", deadline=4.5)
    assert any(p.startswith("H5_URL is empty") and "set H5_URL" in p for p in record["problems"]), record
    assert record["wecom"] == "ok", record
    d = Doctor(settings=on_sim(settings, cfg, url))
    d.check_features()
    assert not any(c.name == "H5_URL" for c in d.checks)


def test_wecom_enabled_false(settings, store, emulator, caplog):
    cfg, url = emulator
    s = on_sim(settings, cfg, url, wecom_enabled=False)
    d = Doctor(settings=s)
    d.check_features()
    flag = next(c for c in d.checks if c.name == "WECOM_ENABLED")
    assert flag.warning and "no directory sync, no pushes" in flag.detail
    assert "set WECOM_ENABLED=true (微签 form: 开启企业微信)" in flag.line()
    caplog.set_level(logging.INFO, logger="wqbot.selfcheck")
    record = selfcheck(s, "worker")
    assert record["wecom_enabled"] is False and record["wecom"] == "not checked: WECOM_ENABLED=false"
    assert any("WECOM_ENABLED=false" in p and "开启企业微信" in p for p in record["problems"])
    (logged,) = [r for r in caplog.records if r.name == "wqbot.selfcheck"]
    assert logged.levelno == logging.WARNING and "WECOM_ENABLED=false" in logged.getMessage()


def test_the_self_check_never_waits_for_wecom_past_its_deadline(settings, store, emulator):
    cfg, url = emulator
    fault(url, path="gettoken", kind="latency", latency_ms=3000)
    s = on_sim(settings, cfg, url)
    started = time.monotonic()
    record = selfcheck(s, "serve", deadline=0.5)
    assert time.monotonic() - started < 1.5
    assert record["wecom"].startswith("not answered within 0.5 s") and record["wecom"] in record["problems"]
