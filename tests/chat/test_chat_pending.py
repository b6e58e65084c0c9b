"""待我处理 / 待办 through the encrypted callback, with tasks created the way 微签 creates them:
POST /api/v1/notifications (WeCom's message/send faked by respx), the push run by the queue."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.auth.links import h5_entry
from store.notifications import NotifyTask
from tests.notify.support import AUTH, add_member, notification
from tests.support import CallbackClient, click, count_queries, message, text

LIST_LINK = "https://wqbot.example.com/oauth/h5?next=%2Fpages%2Findex%2Findex"


@pytest.fixture
def api(immediate_queue, fake_wecom, client):
    """The app with 微签's API and WeCom's callback; a task's card is sent as it is created."""
    return client


def create_task(api, n: int, user: str = "lisi", **fields) -> None:
    body = notification(
        **{
            "id": f"wq-evt-{n}",
            "task_id": f"T-{n}",
            "title": f"合同-{n:03d}",
            "recipients": [user],
            "url": f"/pages/task/task_detail?id=T-{n}",
            "deadline": None,
            **fields,
        }
    )
    r = api.post("/api/v1/notifications", json=body, headers=AUTH)
    assert r.status_code == 202, r.text


def spread_out(task_ids: list[str]) -> None:
    """One task a quarter-hour after the other, in the order given (the last one newest)."""
    base = NotifyTask.select().first().created_at
    for i, task_id in enumerate(task_ids):
        NotifyTask.update(created_at=base + 900 * i).where(NotifyTask.task_id == task_id).execute()


def ask(api, plaintext: str) -> dict:
    reply = api.deliver(plaintext)
    assert reply is not None
    assert reply["ToUserName"] == "lisi" or reply["MsgType"] == "text"
    return reply


def articles(reply: dict) -> list[dict]:
    assert reply["MsgType"] == "news"
    items = reply["Articles"]["item"]
    items = items if isinstance(items, list) else [items]
    assert int(reply["ArticleCount"]) == len(items)
    return items


def test_no_tasks_is_a_friendly_text(api, settings):
    reply = ask(api, click("pending"))
    assert reply["MsgType"] == "text" and reply["Content"].startswith("暂无待办")


def test_one_task_links_to_it_logged_in(api, settings):
    create_task(api, 1, description="张三 发起了审批，请处理")
    (a,) = articles(ask(api, click("pending")))
    assert a["Title"] == "【待审批】合同-001"
    assert a["Description"].startswith("张三 发起了审批，请处理 · ")
    parts = urlsplit(a["Url"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://wqbot.example.com/oauth/h5"
    assert parse_qs(parts.query) == {"next": ["/pages/task/task_detail?id=T-1"]}
    assert a["Url"] == h5_entry(settings, "/pages/task/task_detail?id=T-1")


def test_thirty_tasks_show_the_newest_seven_and_how_many_more(api, settings):
    for n in range(1, 31):
        create_task(api, n, type="sign" if n % 2 else "approve")
    spread_out([f"T-{n}" for n in range(1, 31)])
    with count_queries() as q:
        items = articles(ask(api, click("pending")))
    assert len(items) == 8  # WeCom's limit for a news reply
    assert [a["Title"] for a in items[:7]] == [
        f"【{'待签署' if n % 2 else '待审批'}】合同-{n:03d}" for n in range(30, 23, -1)
    ]
    assert [a["Url"] for a in items[:7]] == [
        h5_entry(settings, f"/pages/task/task_detail?id=T-{n}") for n in range(30, 23, -1)
    ]
    more = items[7]
    assert more["Title"] == "还有 23 项待办，点此查看全部"
    assert more["Url"] == LIST_LINK
    assert "30" in more["Description"]
    queries_for_30 = len(q)
    assert queries_for_30 <= 8
    # the same reply for 9 tasks costs the same number of queries (no query per task)
    NotifyTask.delete().where(NotifyTask.task_id.not_in([f"T-{n}" for n in range(22, 31)])).execute()
    with count_queries() as q9:
        items = articles(ask(api, text("待办", msg_id=9)))
    assert items[-1]["Title"] == "还有 2 项待办，点此查看全部" and len(items) == 8
    assert len(q9) == queries_for_30


def test_exactly_eight_tasks_fit_without_a_more_item(api, settings):
    for n in range(1, 9):
        create_task(api, n)
    spread_out([f"T-{n}" for n in range(1, 9)])
    items = articles(ask(api, click("pending")))
    assert [a["Title"] for a in items] == [f"【待审批】合同-{n:03d}" for n in range(8, 0, -1)]


def test_text_commands_answer_like_the_click(api, settings):
    create_task(api, 1)
    for n, word in enumerate(["待办", " 待办 ", "pending", "PENDING", "ｐｅｎｄｉｎｇ", "待办！", "待我处理"], 1):
        (a,) = articles(ask(api, text(word, msg_id=n)))
        assert a["Title"] == "【待审批】合同-001", word


def test_only_my_open_tasks(api, settings):
    create_task(api, 1)
    create_task(api, 2, user="wangwu")
    create_task(api, 3, type="notice")  # information only: nothing to do
    create_task(api, 4)
    r = api.post(
        "/api/v1/notifications",
        json={"id": "wq-close-4", "type": "close", "task_id": "T-4", "result": "signed"},
        headers=AUTH,
    )
    assert r.status_code == 202
    assert [a["Title"] for a in articles(ask(api, click("pending")))] == ["【待审批】合同-001"]


def test_initiator_shown_by_directory_name_when_no_description(api, settings):
    add_member("zhangsan", name="张三")
    add_member("lisi", name="李四")  # a synced directory resolves recipients: lisi must be in it
    create_task(api, 1, description=None, initiator="zhangsan")
    (a,) = articles(ask(api, click("pending")))
    assert a["Description"].startswith("张三 发起 · ")


def test_a_task_without_its_own_page_opens_the_list(api, settings):
    create_task(api, 1)
    NotifyTask.update(url=None).where(NotifyTask.task_id == "T-1").execute()
    (a,) = articles(ask(api, click("pending")))
    assert a["Url"] == LIST_LINK


def test_greeting_says_how_many_tasks_wait(settings, store, immediate_queue, fake_wecom, clock):
    s = dataclasses.replace(settings, greet_on_enter=True)
    with CallbackClient(s) as c:
        create_task(c, 1)
        create_task(c, 2)
        reply = ask(c, message(FromUserName="lisi", MsgType="event", Event="enter_agent", EventKey="", AgentID=1000002))
    assert reply["MsgType"] == "text" and "你现在有 2 项待办" in reply["Content"]


def test_long_titles_are_cut_to_wecoms_news_limits(api, settings):
    create_task(api, 1, description="说明" * 200)
    NotifyTask.update(title="很长的合同名" * 30).where(NotifyTask.task_id == "T-1").execute()
    (a,) = articles(ask(api, click("pending")))
    assert (
        len(a["Title"].encode()) <= 128 and a["Title"].startswith("【待审批】很长的合同名") and a["Title"].endswith("…")
    )
    assert len(a["Description"].encode()) <= 512 and a["Description"].endswith("…")


def test_control_characters_in_a_title_never_reach_a_reply_or_card(api, fake_wecom, settings):
    # XML forbids C0 controls (but tab/LF/CR): one in a title made every recipient's reply unreadable.
    create_task(api, 1, title="合同\x01\x0b\x1f-甲", description="说明\x08完")
    (a,) = articles(ask(api, click("pending")))
    assert a["Title"] == "【待审批】合同-甲"
    assert a["Description"].startswith("说明完")
    card = fake_wecom.sends[-1]["template_card"]
    assert card["main_title"]["title"] == "合同-甲"
