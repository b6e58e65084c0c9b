"""The morning digest (docs/notifications.md, "Follow-up"), with the clock pinned to a weekday
morning found relative to now (never a fixed date)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta

import pytest

from bot.notify import digest
from store.clock import CST
from store.followup import DigestSent
from tests.notify.support import AUTH, add_member, deadline_in, notification


def post(client, body):
    r = client.post("/api/v1/notifications", json=body, headers=AUTH)
    assert r.status_code == 202, r.text


def next_weekday_at(iso_weekday: int, hh: int, mm: int, ss: int = 30) -> float:
    """The next such moment (China time) at least a day from now."""
    d = datetime.now(CST) + timedelta(days=1)
    while d.isoweekday() != iso_weekday:
        d += timedelta(days=1)
    return d.replace(hour=hh, minute=mm, second=ss, microsecond=0).timestamp()


@pytest.fixture
def morning(settings):
    return dataclasses.replace(settings, digest_at="09:00", digest_weekdays=(1, 2, 3, 4, 5))


def digests(fake_wecom) -> list[dict]:
    return [s for s in fake_wecom.sends if s["msgtype"] == "news"]


def test_once_per_member_per_day_never_to_members_with_nothing_pending(
    client, store, immediate_queue, fake_wecom, morning, clock
):
    for u in ("lisi", "wangwu", "zhaoliu"):
        add_member(u)
    monday = next_weekday_at(1, 8, 59)
    clock.set(monday - 86400 * 3)  # the tasks arrive the Friday before
    post(
        client,
        notification(id="n1", task_id="T-1", title="采购合同", recipients=["lisi", "wangwu"], deadline=deadline_in(9)),
    )
    clock.advance(1)
    post(client, notification(id="n2", task_id="T-2", type="sign", recipients=["lisi"], deadline=deadline_in(9)))
    clock.set(monday)  # 08:59:30
    assert digest.run(morning) == {}
    clock.advance(60)  # 09:00:30
    assert digest.run(morning)["sent"] == 2
    sent = {d["touser"]: d for d in digests(fake_wecom)}
    assert set(sent) == {"lisi", "wangwu"}  # zhaoliu has nothing pending: nothing
    lisi = sent["lisi"]["news"]["articles"]
    assert lisi[0]["title"] == "早上好，你有 2 项待处理"
    assert [a["title"] for a in lisi[1:]] == ["《采购合同-2026-001》", "《采购合同》"]  # newest first
    assert lisi[1]["description"].startswith("待签署") and "截止" in lisi[1]["description"]
    assert all(a["url"].startswith("https://wqbot.example.com/oauth/h5?next=") for a in lisi)
    # the same minute again, later that morning, the evening: nothing more
    for step in (0, 600, 9 * 3600):
        clock.advance(step)
        assert digest.run(morning)["sent"] == 0
    assert len(digests(fake_wecom)) == 2
    # the next morning: once more
    clock.set(monday + 86400 + 60)
    assert digest.run(morning)["sent"] == 2
    assert len(digests(fake_wecom)) == 4


def test_weekends_and_off(client, store, immediate_queue, fake_wecom, morning, settings, clock):
    add_member("lisi")
    saturday = next_weekday_at(6, 9, 30)
    clock.set(saturday - 86400 * 2)
    post(client, notification(recipients=["lisi"], deadline=deadline_in(9)))
    clock.set(saturday)
    assert digest.run(morning) == {}
    clock.set(saturday + 2 * 86400)  # Monday 09:30
    assert digest.run(settings) == {}  # DIGEST_AT empty: off
    assert digests(fake_wecom) == []


def test_many_tasks_end_with_how_many_more(client, store, immediate_queue, fake_wecom, morning, clock):
    add_member("lisi")
    tuesday = next_weekday_at(2, 9, 0)
    clock.set(tuesday - 86400)
    for i in range(9):
        post(client, notification(id=f"n{i}", task_id=f"T-{i}", recipients=["lisi"], deadline=deadline_in(9)))
        clock.advance(1)
    clock.set(tuesday)
    digest.run(morning)
    (d,) = digests(fake_wecom)
    articles = d["news"]["articles"]
    assert len(articles) == 8 and articles[-1]["title"] == "还有 3 项，点此查看全部"


def test_spread_over_the_minutes_at_the_budget(client, store, immediate_queue, fake_wecom, morning, clock):
    users = [f"u{i}" for i in range(5)]
    for u in users:
        add_member(u)
    wednesday = next_weekday_at(3, 9, 0)
    clock.set(wednesday - 86400)
    post(client, notification(recipients=users, deadline=deadline_in(9)))
    clock.set(wednesday)
    assert digest.run(morning, budget=2)["sent"] == 2
    clock.advance(60)
    assert digest.run(morning, budget=2)["sent"] == 2
    clock.advance(60)
    assert digest.run(morning, budget=2)["sent"] == 1
    assert sorted(d["touser"] for d in digests(fake_wecom)) == users
    assert digest.per_minute(morning) == 1000  # the defaults: 100,000 members in 100 minutes


def test_a_send_cut_off_by_a_crash_is_resent_byte_for_byte_once(
    client, store, immediate_queue, fake_wecom, morning, clock
):
    add_member("lisi")
    thursday = next_weekday_at(4, 9, 0)
    clock.set(thursday - 86400)
    post(client, notification(recipients=["lisi"], deadline=deadline_in(9)))
    clock.set(thursday)
    # a worker claimed lisi's digest and died around the send
    body = json.dumps({"touser": "lisi", "msgtype": "news", "news": {"articles": [{"title": "x", "url": "https://a"}]}})
    DigestSent.create(day=digest.day_due(morning, clock.at), userid="lisi", body=body, claimed_at=clock.at)
    assert digest.run(morning)["sent"] == 0  # its lease runs: nobody else sends lisi one
    clock.advance(digest.LEASE + 1)
    assert digest.run(morning)["sent"] == 1
    (d,) = digests(fake_wecom)
    assert {k: v for k, v in d.items() if k != "agentid"} == json.loads(body)
    assert digest.run(morning)["sent"] == 0
