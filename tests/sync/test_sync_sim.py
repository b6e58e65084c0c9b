"""End to end: the reconciliation against the `sim` WeCom emulator, served by uvicorn on a free
port, in list mode, then in list_id mode once the emulator refuses list reads (48009)."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

pytest.importorskip("sim")

from bot.sync import run_sync  # noqa: E402
from bot.wecom import WeComClient  # noqa: E402
from sim import SimConfig, create_app  # noqa: E402
from sim.server import ServerThread  # noqa: E402
from store.directory import Department, User, UserDepartment  # noqa: E402


@pytest.fixture
def emulator():
    cfg = SimConfig(
        corp_id="wwsimsync0000000001", users=150, departments=15, seed=11, redirect_domain="wqbot.example.com"
    )
    app = create_app(cfg)
    with ServerThread(app) as url:
        yield cfg, app.state.sim, url


def settings_for(settings, cfg, url):
    return dataclasses.replace(
        settings,
        wecom_api_base=url,
        wecom_corp_id=cfg.corp_id,
        wecom_app_secret=cfg.app_secret,
        wecom_contacts_secret=cfg.contacts_secret,
    )


def sync(s, **kw):
    return run_sync(s, trigger="test", client=WeComClient(s, sleep=lambda _: None), **kw)


def test_reconciliation_against_the_emulator(settings, store, emulator):
    cfg, sim, url = emulator
    s = settings_for(settings, cfg, url)
    directory = sim.directory
    run = sync(s)
    assert run.status == "ok" and run.mode == "list", run.as_dict()
    assert run.created == len(directory.users) and run.departments_created == len(directory.departments)
    calls = run.as_dict()["api_calls"]
    assert calls == {"department/list": 1, "user/list": 1}
    for u in list(directory.users.values())[:20]:
        row = User.get(User.userid == u.userid)
        assert (row.name, row.position or "", row.mobile, row.active) == (
            u.name,
            u.position or "",
            u.mobile or None,
            u.status not in (2, 5),
        )
        assert sorted(
            m.department_id for m in UserDepartment.select().where(UserDepartment.userid == u.userid)
        ) == sorted(u.department)
    assert Department.select().count() == len(directory.departments)

    assert sync(s).rows_written == 0
    some = next(iter(directory.users.values())).userid
    with httpx.Client(base_url=url) as c:
        r = c.patch(f"/sim/users/{some}", params={"callback": "false"}, json={"position": "首席签约官"})
        assert r.status_code == 200, r.text
    run = sync(s)
    assert (run.updated, run.rows_written) == (1, 1)
    assert User.get(User.userid == some).position == "首席签约官"

    # the 2022 rule: the 通讯录同步 secret on a new IP may no longer read details
    with httpx.Client(base_url=url) as c:
        assert c.patch("/sim/config", json={"contacts_new_ip": True}).status_code == 200
    run = sync(s)
    assert run.mode == "list_id" and run.status == "ok", run.as_dict()
    calls = run.as_dict()["api_calls"]
    assert calls["user/list_id"] >= 1 and calls["department/simplelist"] == 1
    # only a rotating slice is re-read (ceil(150 × 10 / 1440) = 2), and it matches: nothing written
    assert calls["user/get"] == 2 and run.rows_written == 0
