"""/wecom/callback and /wecom/contacts/callback through the ASGI stack `wqbot serve` runs
(tests/support.py `CallbackClient`)."""

from __future__ import annotations

import base64
import time

import pytest

from bot.callback.router import Router
from bot.callback.xml import parse
from bot.crypto import WeComCrypto
from bot.queue import OutboxTask
from store.models import Delivery, Outbox
from tests.support import (
    APP_URL,
    CONTACTS_URL,
    CallbackClient,
    app_crypto,
    click,
    message,
    serving,
    signed,
)

# deferred work the tests look for in the outbox; never registered, so never run
NOOP = OutboxTask("test.noop", lambda **kwargs: None)


def test_url_verification_returns_plain_echostr(client):
    r = client.verify("7243965132098765432", timestamp="1700000000", nonce="1234567890")
    assert r.status_code == 200 and r.text == "7243965132098765432"
    assert r.headers["content-type"].startswith("text/plain")


def test_official_vector_through_the_app(vectors, store, clock):
    """The own-V set (tests/data/wecom_vectors.json) V1 GET, as WeCom sends it: URL-encoded in the query."""
    import settings as settings_mod
    from tests.conftest import TEST_ENV

    v = next(s for s in vectors["sets"] if s["name"] == "own-V")
    case = next(c for c in v["cases"] if c["name"] == "V1")
    s = settings_mod.load(
        env={
            **TEST_ENV,
            "WECOM_TOKEN": v["token"],
            "WECOM_AES_KEY": v["encoding_aes_key"],
            "WECOM_CORP_ID": v["receive_id"],
        },
        dotenv=None,
    )
    with CallbackClient(s) as c:
        r = c.get(APP_URL, params={k: case[k] for k in ("msg_signature", "timestamp", "nonce", "echostr")})
        assert r.status_code == 200 and r.text == case["expect_plaintext"]
        # V3: the click with pad 32, posted as WeCom would
        v3 = next(c for c in v["cases"] if c["name"] == "V3")
        clock.set(int(v3["timestamp"]))  # the vector's own time: deliveries must be fresh
        r = c.post_signed({k: v3[k] for k in ("msg_signature", "timestamp", "nonce")}, v3["post_body"])
        assert r.status_code == 200  # an unknown menu key answers with help
        assert "微签助手" in c.reply_of(r.text)["Content"]


def test_help_click_gets_encrypted_chinese_help(client, settings, store):
    reply = client.deliver(click("help"))
    assert reply["MsgType"] == "text" and reply["ToUserName"] == "lisi"
    assert reply["FromUserName"] == settings.wecom_corp_id
    assert "帮助" in reply["Content"] and "待我处理" in reply["Content"]


def test_wechatpy_decrypts_our_reply(client, settings, store):
    from wechatpy.enterprise.crypto import WeChatCrypto

    r = client.post_signed(*client.sign(click("help")))
    env = parse(r.text)
    wc = WeChatCrypto(settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id)
    plain = wc.decrypt_message(r.text, env["MsgSignature"], env["TimeStamp"], env["Nonce"])
    assert "微签助手" in (plain.decode() if isinstance(plain, bytes) else plain)


def test_unknown_event_is_acked_empty(client, settings, store):
    answer = client.callback(message(MsgType="event", Event="open_approval_change", AgentID=1))
    assert answer.status == 200 and answer.text == ""


def test_same_delivery_three_times_is_handled_once(settings, store):
    """A handler with a visible effect (an outbox row) runs once; every retry gets 200 and the same reply."""
    from bot.callback import CallbackEndpoint, replies
    from bot.queue import defer

    calls = []
    router = Router()

    @router.event("click", key="count")
    def count(msg, ctx):
        calls.append(1)
        defer(NOOP, n=len(calls))
        return replies.text(f"第{len(calls)}次")

    endpoint = CallbackEndpoint(app_crypto(settings), router, settings, "app")
    with CallbackClient(settings, serving(endpoint)) as c:
        answers = []
        for _ in range(3):
            # WeCom re-encrypts a retry: same plaintext, different ciphertext and signature
            answers.append(c.deliver(click("count", CreateTime=1700000000))["Content"])
    assert answers == ["第1次"] * 3
    assert Delivery.select().count() == 1
    assert Outbox.select().count() == 1


# -- bad input: each gets a 4xx, changes nothing, and the server keeps serving -----------------
def _bad_cases(settings):
    c = app_crypto(settings)
    good_params, good_body = signed(c, click("help"))
    other_token = WeComCrypto("OtherToken", settings.wecom_aes_key, settings.wecom_corp_id)
    foreign = WeComCrypto(settings.wecom_token, settings.wecom_aes_key, "wwFOREIGNCORP0001")
    p_other, b_other = signed(other_token, click("help"))
    p_foreign, b_foreign = signed(foreign, click("help"))

    def with_encrypt(enc: str):
        now = str(int(time.time()))
        sig = c.sign(now, "1", enc)
        return (
            {"msg_signature": sig, "timestamp": now, "nonce": "1"},
            f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt></xml>",
        )

    raw = base64.b64decode(parse(good_body)["Encrypt"])
    from tests.crypto.test_crypto import _raw_encrypt

    lying_len = b"R" * 16 + (5000).to_bytes(4, "big") + b"<xml/>" + settings.wecom_corp_id.encode()
    lying_len += bytes([32 - len(lying_len) % 32]) * (32 - len(lying_len) % 32)
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">]><xml><Encrypt>&lol3;</Encrypt></xml>'
    )
    xxe = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>'
    return {
        "wrong signature": (403, {**good_params, "msg_signature": "0" * 40}, good_body),
        "signature from another token": (403, p_other, b_other),
        "encrypted for another corp id": (403, p_foreign, b_foreign),
        "not base64": (400, *with_encrypt("%%%not-base64%%%")),
        "truncated ciphertext": (400, *with_encrypt(base64.b64encode(raw[:-7]).decode())),
        "wrong padding": (400, *with_encrypt(_raw_encrypt(b"\x00" * 64))),
        "length larger than data": (400, *with_encrypt(_raw_encrypt(lying_len))),
        "not XML": (400, good_params, "this is not xml"),
        "XML without Encrypt": (400, good_params, "<xml><ToUserName>x</ToUserName></xml>"),
        "entity bomb": (400, good_params, bomb),
        "external entity": (400, good_params, xxe),
        "2 MB body": (413, good_params, "<xml><Encrypt>" + "A" * (2 * 1024 * 1024) + "</Encrypt></xml>"),
        "missing query parameters": (400, {"timestamp": "1"}, good_body),
    }


@pytest.mark.parametrize(
    "name",
    [
        "wrong signature",
        "signature from another token",
        "encrypted for another corp id",
        "not base64",
        "truncated ciphertext",
        "wrong padding",
        "length larger than data",
        "not XML",
        "XML without Encrypt",
        "entity bomb",
        "external entity",
        "2 MB body",
        "missing query parameters",
    ],
)
def test_bad_input_is_refused_and_changes_nothing(client, settings, store, name):
    status, params, body = _bad_cases(settings)[name]
    r = client.post_signed(params, body)
    assert r.status_code == status, (name, r.text)
    assert r.text  # says what is wrong
    assert Delivery.select().count() == 0 and Outbox.select().count() == 0
    # and the next good request is served
    assert client.callback(click("help")).status == 200


def test_get_with_bad_signature_and_missing_echostr(client, settings):
    c = app_crypto(settings)
    echostr = c.encrypt("123")
    r = client.get(
        "/wecom/callback", params={"msg_signature": "0" * 40, "timestamp": "1", "nonce": "2", "echostr": echostr}
    )
    assert r.status_code == 403 and "signature" in r.text
    r = client.get("/wecom/callback", params={"msg_signature": "0" * 40, "timestamp": "1", "nonce": "2"})
    assert r.status_code == 400 and "echostr" in r.text


def test_contacts_callback_uses_its_own_token_and_key(client, settings, store):
    ok = client.verify("42", CONTACTS_URL)
    assert ok.status_code == 200 and ok.text == "42"
    # the app's Token/key are not accepted on the contacts URL
    ac = app_crypto(settings)
    echostr = ac.encrypt("42")
    r = client.get(
        "/wecom/contacts/callback",
        params={"msg_signature": ac.sign("1", "2", echostr), "timestamp": "1", "nonce": "2", "echostr": echostr},
    )
    assert r.status_code == 403


def test_contacts_callback_is_off_without_its_settings(store):
    import settings as settings_mod
    from tests.conftest import TEST_ENV

    env = {k: v for k, v in TEST_ENV.items() if not k.startswith("WECOM_CONTACTS_")}
    s = settings_mod.load(env=env, dotenv=None)
    with CallbackClient(s) as c:
        r = c.get(CONTACTS_URL, params={"msg_signature": "a", "timestamp": "1", "nonce": "2", "echostr": "x"})
        assert r.status_code == 404 and "WECOM_CONTACTS_TOKEN" in r.text


def test_wecom_disabled_verifies_but_changes_nothing(store):
    import settings as settings_mod
    from tests.conftest import TEST_ENV

    s = settings_mod.load(env={**TEST_ENV, "WECOM_ENABLED": "false"}, dotenv=None)
    with CallbackClient(s) as c:
        p, b = c.sign(click("help"))
        assert c.post_signed(p, b).status_code == 200
        p["msg_signature"] = "0" * 40
        assert c.post_signed(p, b).status_code == 403
    assert Delivery.select().count() == 0


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


# -- replays: a captured delivery is not a URL check, and goes stale ---------------------------------
def test_a_captured_delivery_sent_as_a_url_check_is_not_decrypted(client, settings, store):
    params, body = client.sign(click("help", user="zhangsan"))
    captured = parse(body)["Encrypt"]
    r = client.get(APP_URL, params={**params, "echostr": captured})
    assert r.status_code == 400 and "echostr" in r.text
    assert "zhangsan" not in r.text and "<xml>" not in r.text
    # a real URL check still answers, and so do letters WeCom might one day send
    assert client.verify("5927782489442352469").text == "5927782489442352469"
    assert client.verify("abc_DEF-123").text == "abc_DEF-123"
    for shape in ("<xml/>", "a b", "9" * 65):
        assert client.verify(shape).status_code == 400, shape


def test_a_stale_or_future_delivery_is_refused_and_says_check_the_clock(client, settings, store, clock):
    now = int(clock())
    for ts in (978307200, now - 3601, now + 3601):  # 2001, and just outside the hour either side
        params, body = client.sign(click("help"), timestamp=str(ts))
        r = client.post_signed(params, body)
        assert r.status_code == 400 and "clock" in r.text, (ts, r.text)
    params, body = client.sign(click("help"), timestamp="12ab")
    assert client.post_signed(params, body).status_code == 400
    assert Delivery.select().count() == 0
    for ts in (now - 3500, now + 3500):
        params, body = client.sign(click("help"), timestamp=str(ts))
        assert client.post_signed(params, body).status_code == 200


def test_a_replayed_delete_after_the_key_is_pruned_does_not_disable_a_re_added_member(client, settings, store, clock):
    from bot.queue import prune_deliveries
    from store.directory import User

    User.create(userid="wangwu", name="王五", active=True)
    plain = message(
        FromUserName="sys", MsgType="event", Event="change_contact", ChangeType="delete_user", UserID="wangwu"
    )
    captured = client.sign(plain, url=CONTACTS_URL)
    assert client.post_signed(*captured, url=CONTACTS_URL).status_code == 200
    assert not User.get(User.userid == "wangwu").active
    User.update(active=True).where(User.userid == "wangwu").execute()  # added back later
    clock.advance(73 * 3600)  # the delivery key is gone
    prune_deliveries.call_local()
    assert Delivery.select().count() == 0
    r = client.post_signed(*captured, url=CONTACTS_URL)
    assert r.status_code == 400 and "clock" in r.text
    assert User.get(User.userid == "wangwu").active


def test_each_accepted_callback_is_one_info_record_and_a_refusal_carries_its_fix(client, settings, store, caplog):
    """ "Did WeCom call us?" has an answer in the logs: endpoint, kind, userid, trace id, ms. A
    refused one logs the same fix its answer gives."""
    import logging

    caplog.set_level(logging.INFO, logger="wqbot.callback")
    client.deliver(click("help", user="zhangsan"))
    client.callback(message(MsgType="event", Event="open_approval_change", AgentID=1))  # acknowledged, no handler
    accepted = [r for r in caplog.records if r.getMessage() == "callback accepted"]
    assert len(accepted) == 2, [r.getMessage() for r in caplog.records]
    first = accepted[0]
    assert (first.endpoint, first.kind, first.userid) == ("app", "event:click", "zhangsan")
    assert first.trace_id and isinstance(first.ms, float) and first.ms >= 0
    assert accepted[1].kind == "event:open_approval_change"
    caplog.clear()
    r = client.get(APP_URL, params={"msg_signature": "0" * 40, "timestamp": "1", "nonce": "n", "echostr": "abc"})
    assert r.status_code == 403 and "fix: WECOM_TOKEN differs from the Token at" in r.text
    (refused,) = [x for x in caplog.records if x.getMessage() == "callback refused"]
    assert refused.check == "signature" and r.text.endswith(refused.fix)
    assert not [x for x in caplog.records if x.getMessage() == "callback accepted"]
    from store.ops import OpsError

    time.sleep(0.2)
    assert OpsError.select().count() == 0  # anyone can send a bad signature: logged, not a console row
