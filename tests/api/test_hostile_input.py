"""Hostile input from a client that holds the API token: every one is a 400 whose message says what
to fix, never a 500 (huge numbers, JSON nested past Python's recursion limit, a cursor that is
JSON of the wrong shape, lone surrogates that no UTF-8 store can hold)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.notify.support import AUTH, notification

DEEP = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError on this
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000


def _cursor(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def _raw_json(payload: dict, **replace: str) -> bytes:
    """`payload` as JSON with some string values swapped for raw JSON text (a lone surrogate escape)."""
    text = json.dumps(payload, ensure_ascii=False)
    for key, raw in replace.items():
        text = text.replace(json.dumps(payload[key], ensure_ascii=False), raw, 1)
    return text.encode("utf-8")


GETS = {
    "after past 2**63": "/api/v1/org/changes?after=" + str(2**63),
    "after far past 2**63": "/api/v1/org/changes?after=" + "9" * 40,
    "limit past 2**63": "/api/v1/org/users?limit=" + str(2**64),
    "cursor of nested JSON": "/api/v1/org/users?cursor=" + _cursor({"after": {"a": [1, {"b": 2}]}}),
    "cursor of deep JSON": "/api/v1/org/users?cursor="
    + base64.urlsafe_b64encode(("[" * 5000 + "]" * 5000).encode()).decode(),
    "cursor with a lone surrogate": "/api/v1/org/users?cursor=" + _cursor({"after": "\ud800"}),
}


@pytest.mark.parametrize("name", sorted(GETS))
def test_hostile_query_is_a_400_with_a_message(client, store, name):
    r = client.get(GETS[name], headers=AUTH)
    assert r.status_code == 400, (name, r.status_code, r.text[:300])
    assert r.json()["message"], name


JSON_ENDPOINTS = ["/api/v1/notifications", "/api/v1/tickets/validate", "/api/v1/jssdk/signature"]


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_deeply_nested_json_is_a_400_on_every_json_endpoint(client, store, path, body):
    r = client.post(path, content=body.encode(), headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 400, (path, r.status_code, r.text[:300])
    assert "nested" in r.json()["message"]


def test_a_lone_surrogate_in_a_title_is_a_400(client, store, fake_wecom):
    body = notification(id="wq-sur-1", title="合同X", recipients=["lisi"])
    r = client.post(
        "/api/v1/notifications",
        content=_raw_json(body, title='"合同\\ud800"'),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert "title" in r.json()["message"]


def test_a_lone_surrogate_anywhere_in_a_notification_is_a_400(client, store, fake_wecom):
    body = notification(id="wq-sur-2", recipients=["lisi"], description="说明")
    for field in ("id", "description"):
        r = client.post(
            "/api/v1/notifications",
            content=_raw_json(body, **{field: '"x\\udfff"'}),
            headers={**AUTH, "content-type": "application/json"},
        )
        assert r.status_code == 400 and r.json()["message"], (field, r.text)


def test_a_lone_surrogate_in_a_ticket_is_a_400(client, store):
    r = client.post(
        "/api/v1/tickets/validate",
        content=b'{"ticket": "abc\\ud800def"}',
        headers={**AUTH, "content-type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert "ticket" in r.json()["message"]


def test_a_notification_url_too_long_to_carry_through_a_login_is_a_400(client, store, fake_wecom):
    body = notification(id="wq-long-url", recipients=["lisi"], url="/pages/x?q=" + "好" * 200)
    r = client.post("/api/v1/notifications", json=body, headers=AUTH)
    assert r.status_code == 400 and r.json()["message"].startswith("url: ") and "512" in r.json()["message"]
