"""CallbackFastPath (in the stack `wqbot serve` serves): the callback URLs skip Starlette's
middleware and route walk, and answer exactly as through the app; everything else is the app's."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from bot.callback import CallbackEndpoint, CallbackFastPath
from bot.server import stack
from store.models import Delivery
from tests.callback.test_callback import _bad_cases
from tests.support import CONTACTS_URL, CallbackClient, click


@pytest.fixture
def both(settings, store):
    from bot.app import create_app

    app = create_app(settings, init_store=False)
    with TestClient(app) as plain, CallbackClient(settings, stack(app)) as fast:
        yield plain, fast, app


def test_it_finds_both_callback_endpoints(both):
    _, fast, app = both
    fast_app = CallbackFastPath(app)
    assert set(fast_app.endpoints) == {"/wecom/callback", "/wecom/contacts/callback"}
    assert all(isinstance(e, CallbackEndpoint) for e in fast_app.endpoints.values())
    assert fast_app.state.settings is app.state.settings  # the app's attributes show through


class Spy:
    """The app, counting the requests that reach it."""

    def __init__(self, app):
        self.app, self.calls = app, []

    async def __call__(self, scope, receive, send):
        self.calls.append((scope["type"], scope.get("path")))
        await self.app(scope, receive, send)

    @property
    def routes(self):
        return self.app.routes


def test_callbacks_are_answered_on_the_fast_path(settings, store):
    from bot.app import create_app

    spy = Spy(create_app(settings, init_store=False))
    with CallbackClient(settings, stack(spy)) as fast:
        assert "微签助手" in fast.deliver(click("help"))["Content"]
        r = fast.verify("42", CONTACTS_URL)
        assert r.status_code == 200 and r.text == "42"
        assert fast.get("/healthz").json() == {"status": "ok"}
    assert Delivery.select().count() == 1
    assert [c for c in spy.calls if c[0] == "http"] == [("http", "/healthz")]  # only that reached the app
    assert ("lifespan", None) in spy.calls


@pytest.mark.parametrize(
    "name", ["wrong signature", "not base64", "not XML", "entity bomb", "2 MB body", "missing query parameters"]
)
def test_bad_input_gets_the_same_answer_both_ways(both, settings, name):
    plain, fast, _ = both
    status, params, body = _bad_cases(settings)[name]
    a = plain.post("/wecom/callback", params=params, content=body.encode())
    b = fast.post("/wecom/callback", params=params, content=body.encode())
    assert (a.status_code, a.text, a.headers["content-type"]) == (b.status_code, b.text, b.headers["content-type"])
    assert b.status_code == status


def test_everything_else_is_the_apps(both, settings):
    plain, fast, _ = both
    assert fast.get("/healthz").json() == {"status": "ok"}
    assert fast.put("/wecom/callback").status_code == plain.put("/wecom/callback").status_code == 405
    assert fast.get("/wecom/callback/").status_code == plain.get("/wecom/callback/").status_code


def test_behind_a_path_prefix_starlette_resolves_the_route(settings, store):
    from bot.app import create_app

    spy = Spy(create_app(settings, init_store=False))
    with CallbackClient(settings, stack(spy), root_path="/bot") as fast:
        r = fast.post_signed(*fast.sign(click("help")))
    assert r.status_code == 200 and [c for c in spy.calls if c[0] == "http"] == [("http", "/wecom/callback")]
