"""Fixtures for the emulator's contract tests: a SimConfig, a TestClient on the emulator, token
helpers, and a real loopback receiver that decrypts what the emulator POSTs with wechatpy (an
independent implementation of WeCom's crypto) and can answer with an encrypted passive reply."""

from __future__ import annotations

import time

import pytest
import xmltodict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from wechatpy.enterprise.crypto import WeChatCrypto

from sim import SimConfig, create_app
from sim.server import ServerThread

CORP = "wwsimtest0000000001"


def make_config(**kw) -> SimConfig:
    base = dict(
        corp_id=CORP,
        users=60,
        departments=10,
        seed=7,
        callback_url="http://127.0.0.1:9/unused",
        callback_retries=0,
        callback_retry_interval=0.0,
        callback_timeout=3.0,
        redirect_domain="wqbot.example.com",
    )
    base.update(kw)
    return SimConfig(**base)


@pytest.fixture
def cfg():
    return make_config()


@pytest.fixture
def app(cfg):
    return create_app(cfg)


@pytest.fixture
def sim(app):
    return app.state.sim


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


class Tokens:
    def __init__(self, client, cfg):
        self.client, self.cfg = client, cfg

    def get(self, kind: str = "app") -> str:
        secret = self.cfg.app_secret if kind == "app" else self.cfg.contacts_secret
        r = self.client.get("/cgi-bin/gettoken", params={"corpid": self.cfg.corp_id, "corpsecret": secret})
        assert r.json()["errcode"] == 0, r.json()
        return r.json()["access_token"]

    def call(self, path: str, kind: str = "app", json=None, **params) -> dict:
        params["access_token"] = self.get(kind)
        if json is not None:
            r = self.client.post("/cgi-bin/" + path, params=params, json=json)
        else:
            r = self.client.get("/cgi-bin/" + path, params=params)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def wx(client, cfg):
    return Tokens(client, cfg)


class Receiver:
    """A callback URL: verifies and decrypts with wechatpy, records, optionally replies."""

    def __init__(self, token: str, aes_key: str, corp_id: str):
        self.crypto = WeChatCrypto(token, aes_key, corp_id)
        self.received: list[dict] = []
        self.raw: list[bytes] = []
        self.reply = None  # fn(message dict) -> plaintext reply XML, or None for an empty 200
        self.echo_override: str | None = None
        self.app = Starlette(routes=[Route("/cb", self.endpoint, methods=["GET", "POST"])])

    async def endpoint(self, request: Request) -> Response:
        q = request.query_params
        if request.method == "GET":
            echo = self.crypto.check_signature(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"])
            return PlainTextResponse(self.echo_override if self.echo_override is not None else echo)
        body = await request.body()
        self.raw.append(body)
        plain = self.crypto.decrypt_message(body.decode(), q["msg_signature"], q["timestamp"], q["nonce"])
        msg = xmltodict.parse(plain)["xml"]
        self.received.append(msg)
        if self.reply is None:
            return PlainTextResponse("")
        out = self.reply(msg)
        if not out:
            return PlainTextResponse("")
        return Response(
            self.crypto.encrypt_message(out, "nonce123", str(int(time.time()))), media_type="application/xml"
        )

    def clear(self) -> None:
        self.received.clear()
        self.raw.clear()
        self.reply = None
        self.echo_override = None


@pytest.fixture(scope="session")
def receivers():
    """Two live callback URLs (app, contacts) on loopback, keyed like make_config()'s defaults."""
    defaults = SimConfig()
    app_rx = Receiver(defaults.token, defaults.aes_key, CORP)
    contacts_rx = Receiver(defaults.contacts_token, defaults.contacts_aes_key, CORP)
    with ServerThread(app_rx.app) as app_url, ServerThread(contacts_rx.app) as contacts_url:
        app_rx.url, contacts_rx.url = app_url + "/cb", contacts_url + "/cb"
        yield app_rx, contacts_rx


@pytest.fixture
def live(receivers):
    """(client, sim, app receiver, contacts receiver) with both callback URLs pointing at the receivers."""
    app_rx, contacts_rx = receivers
    app_rx.clear()
    contacts_rx.clear()
    cfg = make_config(callback_url=app_rx.url, contacts_callback_url=contacts_rx.url)
    application = create_app(cfg)
    with TestClient(application) as c:
        yield c, application.state.sim, app_rx, contacts_rx
