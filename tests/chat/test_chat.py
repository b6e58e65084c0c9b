"""Chat through the encrypted app callback: menu clicks, text commands, the enter_agent greeting.

Every reply is decrypted with wechatpy (an independent implementation of WeCom's crypto), by
tests/support.py `CallbackClient`."""

from __future__ import annotations

import dataclasses
import logging
import time

import pytest

from bot import texts
from bot.handlers import chat
from store.models import Delivery
from tests.support import CallbackClient, click, message, text


def enter_agent(user: str = "lisi", at: int | None = None) -> str:
    return message(
        FromUserName=user,
        CreateTime=at or int(time.time()),
        MsgType="event",
        Event="enter_agent",
        EventKey="",
        AgentID=1000002,
    )


# -- help --------------------------------------------------------------------------------------------


def test_help_click(client):
    reply = client.deliver(click("help", user="wangwu"))
    assert reply["MsgType"] == "text" and reply["ToUserName"] == "wangwu"
    assert reply["Content"].startswith("微签助手可以帮你")
    assert "待我处理" in reply["Content"] and "进入微签" in reply["Content"]


def test_unknown_click_gets_help_and_a_log_line_naming_the_key(client, caplog):
    with caplog.at_level(logging.INFO, logger="wqbot.chat"):
        reply = client.deliver(click("BTN_OLD_REPORT"))
    assert reply["Content"].startswith("微签助手可以帮你")
    lines = [r for r in caplog.records if r.name == "wqbot.chat"]
    assert len(lines) == 1 and "BTN_OLD_REPORT" in lines[0].getMessage()
    assert lines[0].levelno == logging.WARNING and lines[0].event_key == "BTN_OLD_REPORT"


def test_help_words_and_anything_unknown_get_help(client):
    # one store for all of them: each is its own message (MsgId), so none is taken for a retry
    words = [
        "帮助",
        " 帮助 ",
        "help",
        "HELP",
        " HELP ",
        " Help  ",
        "Help!",
        "?",
        "？",
        "ｈｅｌｐ",
        "ＨＥＬＰ",
        "帮助！",
        "你好",
        "签合同",
        "",
        "   ",
        "待办事项是什么",
    ]
    for n, word in enumerate(words, 1):
        reply = client.deliver(text(word, msg_id=n))
        assert reply["MsgType"] == "text", word
        assert reply["Content"] == texts.HELP and texts.HELP.startswith("微签助手可以帮你"), word
    assert Delivery.select().count() == len(words)


def test_a_retried_text_gets_the_same_reply_once(client):
    plain = text("帮助", msg_id=4242)
    first = client.deliver(plain)
    again = client.deliver(plain)  # WeCom re-encrypts a retry; the plaintext is the same
    assert first["Content"] == again["Content"]
    assert Delivery.select().count() == 1


# -- lenient matching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "待办",
        " 待办 ",
        "待办。",
        "待 办",
        "pending",
        "PENDING",
        " Pending\n",
        "ｐｅｎｄｉｎｇ",
        "ＰＥＮＤＩＮＧ！",
        "\u3000待办\u3000",
        "待我处理",
    ],
)
def test_pending_words_match_leniently(raw):
    assert chat.normalise(raw) in chat.PENDING_WORDS


@pytest.mark.parametrize("raw", ["待办事项", "pend", "pending tasks", "不待办"])
def test_near_misses_are_not_pending(raw):
    assert chat.normalise(raw) not in chat.PENDING_WORDS


# -- enter_agent greeting ----------------------------------------------------------------------------


def test_no_greeting_by_default(client, settings):
    assert settings.greet_on_enter is False
    assert client.deliver(enter_agent()) is None


MIDNIGHT_CST = 1_764_000_000.0  # 2025-11-25 00:00 in China (UTC+8), 2025-11-24 16:00 UTC


@pytest.fixture
def greeting_client(settings, store, clock):
    clock.set(MIDNIGHT_CST)  # the day boundary is the point of these tests: pinned
    with CallbackClient(dataclasses.replace(settings, greet_on_enter=True)) as c:
        c.clock = clock
        yield c


def test_greeting_at_most_once_a_day_per_person(greeting_client):
    c = greeting_client
    first = c.deliver(enter_agent("lisi", at=1))
    assert first["MsgType"] == "text" and first["ToUserName"] == "lisi"
    assert first["Content"].startswith("你好，欢迎使用微签助手")
    assert c.deliver(enter_agent("lisi", at=2)) is None  # same day, a new event
    c.clock.advance(23 * 3600 + 3599)  # 23:59:59 the same day
    assert c.deliver(enter_agent("lisi", at=3)) is None
    assert c.deliver(enter_agent("wangwu", at=4))["ToUserName"] == "wangwu"  # another person
    c.clock.advance(1)  # midnight in China
    assert c.deliver(enter_agent("lisi", at=5))["Content"].startswith("你好")
    assert c.deliver(enter_agent("lisi", at=6)) is None


def test_day_boundary_is_china_time(greeting_client):
    c = greeting_client
    c.clock.set(MIDNIGHT_CST - 1)  # 23:59:59 in China, 15:59:59 UTC
    assert c.deliver(enter_agent("lisi", at=1)) is not None
    c.clock.advance(1)  # 00:00 in China: a new day there, still the same UTC day
    assert c.deliver(enter_agent("lisi", at=2)) is not None


def test_greeting_setting_is_read_from_the_environment():
    import settings as settings_mod
    from tests.conftest import TEST_ENV

    assert settings_mod.load(env={**TEST_ENV}, dotenv=None).greet_on_enter is False
    assert settings_mod.load(env={**TEST_ENV, "WQBOT_GREET_ON_ENTER": "true"}, dotenv=None).greet_on_enter is True


def test_a_greeting_rolled_back_is_not_counted(greeting_client, monkeypatch):
    """The greeting is recorded in the delivery's transaction: if the reply fails, WeCom's
    retry still greets."""
    from bot.callback import replies

    c = greeting_client
    real = replies.text
    monkeypatch.setattr(replies, "text", lambda s: (_ for _ in ()).throw(RuntimeError("boom")))
    assert c.callback(enter_agent("lisi", at=7)).status == 500
    monkeypatch.setattr(replies, "text", real)
    assert c.deliver(enter_agent("lisi", at=7))["Content"].startswith("你好")
