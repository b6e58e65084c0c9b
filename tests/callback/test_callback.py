"""/wecom/callback and /wecom/contacts/callback through the ASGI app."""

from __future__ import annotations

import base64

import pytest

from bot.callback.router import Router
from bot.callback.xml import parse
from bot.crypto import WeComCrypto
from bot.queue import OutboxTask
from store.models import Delivery, Outbox
from tests.support import app_crypto, click, contacts_crypto, decrypt_reply, signed, text

# deferred work the tests look for in the outbox; never registered, so never run
NOOP = OutboxTask("test.noop", lambda **kwargs: None)


def post(client, params, body, path="/wecom/callback"):
    return client.post(
        path,
        params=params,
        content=body.encode() if isinstance(body, str) else body,
        headers={"content-type": "text/xml"},
    )


def test_url_verification_returns_plain_echostr(client, settings):
    c = app_crypto(settings)
    echostr = c.encrypt("7243965132098765432")
    sig = c.sign("1700000000", "1234567890", echostr)
    r = client.get(
        "/wecom/callback",
        params={"msg_signature": sig, "timestamp": "1700000000", "nonce": "1234567890", "echostr": echostr},
    )
    assert r.status_code == 200 and r.text == "7243965132098765432"
    assert r.headers["content-type"].startswith("text/plain")


def test_official_vector_through_the_app(vectors, store):
    """The own-V set (PROTOCOL §2.4) V1 GET, as WeCom sends it: URL-encoded in the query."""
    from starlette.testclient import TestClient

    import settings as settings_mod
    from bot.app import create_app
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
    with TestClient(create_app(s, init_store=False)) as c:
        r = c.get("/wecom/callback", params={k: case[k] for k in ("msg_signature", "timestamp", "nonce", "echostr")})
        assert r.status_code == 200 and r.text == case["expect_plaintext"]
        # V3: the click with pad 32, posted as WeCom would
        v3 = next(c for c in v["cases"] if c["name"] == "V3")
        r = c.post(
            "/wecom/callback",
            params={k: v3[k] for k in ("msg_signature", "timestamp", "nonce")},
            content=v3["post_body"].encode(),
        )
        assert r.status_code == 200  # an unknown menu key answers with help
        assert "微签助手" in decrypt_reply(WeComCrypto(v["token"], v["encoding_aes_key"], v["receive_id"]), r.text)


def test_help_click_gets_encrypted_chinese_help(client, settings, store):
    params, body = signed(app_crypto(settings), click("help"))
    r = post(client, params, body)
    assert r.status_code == 200
    reply = parse(decrypt_reply(app_crypto(settings), r.text))
    assert reply["MsgType"] == "text" and reply["ToUserName"] == "lisi"
    assert reply["FromUserName"] == settings.wecom_corp_id
    assert "帮助" in reply["Content"] and "待我处理" in reply["Content"]


@pytest.mark.parametrize("word", ["帮助", "help", " HELP ", "？", "ｈｅｌｐ"])
def test_help_words(client, settings, store, word):
    params, body = signed(app_crypto(settings), text(word))
    r = post(client, params, body)
    assert "微签助手" in parse(decrypt_reply(app_crypto(settings), r.text))["Content"]


def test_wechatpy_decrypts_our_reply(client, settings, store):
    from wechatpy.enterprise.crypto import WeChatCrypto

    params, body = signed(app_crypto(settings), click("help"))
    r = post(client, params, body)
    env = parse(r.text)
    wc = WeChatCrypto(settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id)
    plain = wc.decrypt_message(r.text, env["MsgSignature"], env["TimeStamp"], env["Nonce"])
    assert "微签助手" in (plain.decode() if isinstance(plain, bytes) else plain)


def test_unknown_event_is_acked_empty(client, settings, store):
    from tests.support import message

    params, body = signed(app_crypto(settings), message(MsgType="event", Event="open_approval_change", AgentID=1))
    r = post(client, params, body)
    assert r.status_code == 200 and r.text == ""


def test_same_delivery_three_times_is_handled_once(settings, store):
    """A handler with a visible effect (an outbox row) runs once; every retry gets 200 and the same reply."""
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from bot.callback import CallbackEndpoint, replies
    from bot.queue import defer

    calls = []
    router = Router()

    @router.event("click", key="count")
    def count(msg, ctx):
        calls.append(1)
        defer(NOOP, n=len(calls))
        return replies.text(f"第{len(calls)}次")

    crypto = app_crypto(settings)
    app = Starlette(routes=[Route("/cb", CallbackEndpoint(crypto, router, settings, "app"), methods=["GET", "POST"])])
    params, body = signed(crypto, click("count"))
    with TestClient(app) as c:
        answers = []
        for _ in range(3):
            # WeCom re-encrypts a retry: same plaintext, different ciphertext and signature
            params, body = signed(crypto, click("count", CreateTime=1700000000))
            r = c.post("/cb", params=params, content=body)
            assert r.status_code == 200
            answers.append(parse(decrypt_reply(crypto, r.text))["Content"])
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
        sig = c.sign("1700000000", "1", enc)
        return (
            {"msg_signature": sig, "timestamp": "1700000000", "nonce": "1"},
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
    r = post(client, params, body)
    assert r.status_code == status, (name, r.text)
    assert r.text  # says what is wrong
    assert Delivery.select().count() == 0 and Outbox.select().count() == 0
    # and the next good request is served
    p, b = signed(app_crypto(settings), click("help"))
    assert post(client, p, b).status_code == 200


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
    cc = contacts_crypto(settings)
    echostr = cc.encrypt("42")
    ok = client.get(
        "/wecom/contacts/callback",
        params={"msg_signature": cc.sign("1", "2", echostr), "timestamp": "1", "nonce": "2", "echostr": echostr},
    )
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
    from starlette.testclient import TestClient

    import settings as settings_mod
    from bot.app import create_app
    from tests.conftest import TEST_ENV

    env = {k: v for k, v in TEST_ENV.items() if not k.startswith("WECOM_CONTACTS_")}
    s = settings_mod.load(env=env, dotenv=None)
    with TestClient(create_app(s, init_store=False)) as c:
        r = c.get(
            "/wecom/contacts/callback", params={"msg_signature": "a", "timestamp": "1", "nonce": "2", "echostr": "x"}
        )
        assert r.status_code == 404 and "WECOM_CONTACTS_TOKEN" in r.text


def test_wecom_disabled_verifies_but_changes_nothing(store):
    from starlette.testclient import TestClient

    import settings as settings_mod
    from bot.app import create_app
    from tests.conftest import TEST_ENV

    s = settings_mod.load(env={**TEST_ENV, "WECOM_ENABLED": "false"}, dotenv=None)
    with TestClient(create_app(s, init_store=False)) as c:
        p, b = signed(app_crypto(s), click("help"))
        assert post(c, p, b).status_code == 200
        p["msg_signature"] = "0" * 40
        assert post(c, p, b).status_code == 403
    assert Delivery.select().count() == 0


def test_healthz(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
