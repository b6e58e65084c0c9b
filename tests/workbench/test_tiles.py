"""The 工作台 tile (docs/notifications.md, "Follow-up"): counts follow new tasks, approvals and
closes; unchanged counts cost nothing; at most one set_workbench_data per member per minute;
refusals are kept and reported; `wqbot workbench fill` is resumable. Clock pinned."""

from __future__ import annotations

import io
import logging

import pytest

from bot.wecom import client_for
from bot.workbench import cli, refresh
from store.followup import WorkbenchTile
from tests.notify.support import AUTH, add_member, deadline_in, notification, tap_xml


def post(client, body):
    r = client.post("/api/v1/notifications", json=body, headers=AUTH)
    assert r.status_code == 202, r.text


@pytest.fixture
def tiles(store, settings, fake_wecom, immediate_queue, clock):
    for u in ("lisi", "wangwu", "zhaoliu"):
        add_member(u)
    body = refresh.template_set(settings, client_for(settings))
    assert [i["key"] for i in body["keydata"]["items"]] == ["待审批", "待签署"]
    return fake_wecom


def tick(settings, clock, seconds: float = 60) -> dict:
    clock.advance(seconds)
    return refresh.refresh(settings)


def test_the_template_opens_the_h5_lists_logged_in(tiles, settings):
    (template,) = tiles.workbench_templates
    assert template["type"] == "keydata" and template["agentid"] == 1000002
    assert template["replace_user_data"] is False
    urls = [i["jump_url"] for i in template["keydata"]["items"]]
    assert urls == [
        "https://wqbot.example.com/oauth/h5?next=%2Fpages%2Ftask%2Ftask_list%3Ftype%3Dapprove",
        "https://wqbot.example.com/oauth/h5?next=%2Fpages%2Ftask%2Ftask_list%3Ftype%3Dsign",
    ]


def test_counts_follow_new_tasks_approvals_and_closes(tiles, client, settings, clock):
    post(client, notification(id="n1", task_id="T-1", recipients=["lisi", "wangwu"]))
    tick(settings, clock)
    assert sorted(tiles.tiles()) == [("lisi", "1", "0"), ("wangwu", "1", "0")]
    # nothing changed: no call
    tick(settings, clock)
    assert len(tiles.tiles()) == 2
    post(client, notification(id="n2", type="sign", task_id="T-2", recipients=["lisi"], deadline=deadline_in(9)))
    tick(settings, clock)
    assert tiles.tiles()[2:] == [("lisi", "1", "1")]  # wangwu's counts did not change: no call
    card = tiles.sends[0]["template_card"]["task_id"]
    client.deliver(tap_xml("wangwu", card))  # wangwu approves T-1: it leaves both tiles
    tick(settings, clock)
    assert sorted(tiles.tiles()[3:]) == [("lisi", "0", "1"), ("wangwu", "0", "0")]
    post(client, {"id": "n2-close", "type": "close", "task_id": "T-2", "result": "signed"})
    tick(settings, clock)
    assert tiles.tiles()[5:] == [("lisi", "0", "0")]
    assert WorkbenchTile.get(WorkbenchTile.userid == "lisi").dirty is False


def test_at_most_one_call_per_member_per_minute(tiles, client, settings, clock):
    post(client, notification(id="n1", task_id="T-1", recipients=["lisi"]))
    tick(settings, clock)
    post(client, notification(id="n2", task_id="T-2", recipients=["lisi"]))
    tick(settings, clock, 10)  # set 10 s ago: it waits, stale
    assert tiles.tiles() == [("lisi", "1", "0")]
    assert WorkbenchTile.get(WorkbenchTile.userid == "lisi").dirty is True
    post(client, notification(id="n3", task_id="T-3", recipients=["lisi"]))
    tick(settings, clock, 50)  # the next minute: one call with both changes
    assert tiles.tiles() == [("lisi", "1", "0"), ("lisi", "3", "0")]


def test_a_refusal_is_kept_and_reported_not_retried_every_minute(tiles, client, settings, clock, caplog):
    post(client, notification(id="n1", task_id="T-1", recipients=["lisi"]))
    tiles.fail_workbench = [{"errcode": 40058, "errmsg": "invalid keydata"}]
    with caplog.at_level(logging.ERROR, logger="wqbot.workbench"):
        out = tick(settings, clock)
    assert out["refused"] == 1
    assert "set_workbench_data refused for 1 member(s)" in caplog.text and "40058" in caplog.text
    row = WorkbenchTile.get(WorkbenchTile.userid == "lisi")
    assert "40058" in row.error and row.approve == 1
    tick(settings, clock)
    assert len(tiles.workbench_data) == 1  # not retried while its counts stay the same
    post(client, notification(id="n2", task_id="T-2", recipients=["lisi"]))
    tick(settings, clock)
    assert tiles.tiles()[-1] == ("lisi", "2", "0")
    assert WorkbenchTile.get(WorkbenchTile.userid == "lisi").error is None


def test_nothing_is_set_before_the_template(store, settings, fake_wecom, immediate_queue, client, clock):
    add_member("lisi")
    post(client, notification(recipients=["lisi"]))
    assert refresh.refresh(settings) == {}
    assert fake_wecom.workbench_data == []
    out = io.StringIO()
    assert cli.fill(settings, client_for(settings), out=out) == 2
    assert "wqbot workbench push" in out.getvalue()


def test_fill_sets_every_member_and_resumes(tiles, client, settings, clock):
    post(client, notification(id="n1", task_id="T-1", recipients=["wangwu"]))
    out = io.StringIO()
    assert cli.fill(settings, client_for(settings), out=out) == 0
    assert sorted(tiles.tiles()) == [("lisi", "0", "0"), ("wangwu", "1", "0"), ("zhaoliu", "0", "0")]
    text = out.getvalue()
    assert "3 of 3 members" in text and "100,000 members: about" in text and "3/3" in text
    # an interrupted fill left its place: the next run goes on after it
    refresh._put(cli.FILL_CURSOR_KEY, "lisi")
    clock.advance(60)
    out = io.StringIO()
    assert cli.fill(settings, client_for(settings), out=out) == 0
    assert sorted(tiles.tiles()[3:]) == [("wangwu", "1", "0"), ("zhaoliu", "0", "0")]
    assert "resuming after lisi" in out.getvalue()


def test_the_estimate_at_the_default_limits():
    from bot.wecom import Limits

    # 20,000 at once from the hour's burst, then about 1,670 a minute
    assert 45 * 60 < cli.estimate_seconds(100_000, Limits()) < 50 * 60
    assert cli.estimate_seconds(500, Limits()) == 0.0
