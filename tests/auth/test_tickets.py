"""`POST /api/v1/tickets/validate`: the identity once, then 410; unknown 404; races have one winner."""

from __future__ import annotations

import threading

import pytest

from store import login as login_store
from tests.auth.support import add_member
from tests.conftest import BACKEND, TEST_ENV

AUTH = {"Authorization": "Bearer " + TEST_ENV["WEIQIAN_API_TOKEN"]}


def validate(client, body, headers=AUTH):
    return client.post("/api/v1/tickets/validate", json=body, headers=headers)


def test_identity_once_then_410(client, settings, store):
    add_member("lisi", "李四", departments=(5, 1, 3), account="A-lisi")
    ticket = login_store.issue_ticket(settings.secret_key, "lisi", "pc")
    r = validate(client, {"ticket": ticket})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert r.json() == {"userid": "lisi", "name": "李四", "departments": [5, 1, 3], "account": "A-lisi", "via": "pc"}
    r = validate(client, {"ticket": ticket})
    assert r.status_code == 410 and r.json()["error"] == "ticket_used"


def test_unknown_ticket_is_404(client, store):
    r = validate(client, {"ticket": "NeverIssued0123456789"})
    assert r.status_code == 404 and r.json()["error"] == "ticket_unknown"


def test_expired_ticket_is_410(client, settings, store):
    add_member("lisi")
    ticket = login_store.issue_ticket(settings.secret_key, "lisi", "h5")
    login_store.LoginTicket.update(expires_at=login_store.now() - 1).execute()
    r = validate(client, {"ticket": ticket})
    assert r.status_code == 410 and r.json()["error"] == "ticket_expired"
    # and it stays refused: expiry is not a use, but it is not usable either
    assert validate(client, {"ticket": ticket}).status_code == 410


def test_ticket_lives_about_five_minutes(settings, store):
    ticket = login_store.issue_ticket(settings.secret_key, "lisi", "h5")
    row = login_store.LoginTicket.get()
    assert 240 <= row.expires_at - row.created_at <= 360
    assert row.ticket_hash == login_store.digest(settings.secret_key, ticket) != ticket


def test_member_disabled_since_the_login(client, settings, store):
    from store.directory import User

    add_member("lisi")
    ticket = login_store.issue_ticket(settings.secret_key, "lisi", "h5")
    User.update(active=False).where(User.userid == "lisi").execute()
    r = validate(client, {"ticket": ticket})
    assert r.status_code == 410 and r.json()["error"] == "member_inactive"


@pytest.mark.parametrize(
    "body, status",
    [
        ({}, 400),
        ({"ticket": ""}, 400),
        ({"ticket": 123}, 400),
        ({"ticket": None}, 400),
        ({"ticket": "x" * 5000}, 400),
        ({"ticket": ["a"]}, 400),
    ],
)
def test_bad_bodies(client, store, body, status):
    r = validate(client, body)
    assert r.status_code == status and r.json()["error"] == "invalid_ticket"


def test_needs_the_bearer_token(client, settings, store):
    add_member("lisi")
    ticket = login_store.issue_ticket(settings.secret_key, "lisi", "h5")
    assert validate(client, {"ticket": ticket}, headers={}).status_code == 401
    assert validate(client, {"ticket": ticket}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert validate(client, {"ticket": ticket}).status_code == 200  # the refused calls did not use it


def test_not_json(client, store):
    r = client.post("/api/v1/tickets/validate", content=b"ticket=abc", headers=AUTH)
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"


def test_a_ticket_signed_with_another_secret_key_is_unknown(client, settings, store):
    add_member("lisi")
    ticket = login_store.issue_ticket("another-secret-key", "lisi", "h5")
    assert validate(client, {"ticket": ticket}).status_code == 404


@pytest.mark.parametrize("attempt", range(3))
def test_racing_validations_have_exactly_one_winner(settings, store, attempt):
    add_member("lisi")
    ticket = login_store.issue_ticket(settings.secret_key, "lisi", "h5")
    racers = 8
    barrier = threading.Barrier(racers)
    results: list = []
    lock = threading.Lock()

    def race():
        barrier.wait()
        try:
            out = login_store.redeem_ticket(settings.secret_key, ticket)
        except login_store.TicketRefused as e:
            out = e.reason
        except Exception as e:  # a database error would be a bug worth seeing
            out = repr(e)
        with lock:
            results.append(out)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    winners = [r for r in results if isinstance(r, login_store.Redeemed)]
    assert len(results) == racers, results
    assert len(winners) == 1, (BACKEND, results)
    assert winners[0] == login_store.Redeemed("lisi", "h5")
    assert sorted(r for r in results if isinstance(r, str)) == ["used"] * (racers - 1)


def test_racing_http_validations_have_exactly_one_winner(app, settings, store):
    import asyncio

    import httpx

    add_member("lisi")
    ticket = login_store.issue_ticket(settings.secret_key, "lisi", "h5")

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://wqbot.example.com") as c:
            return await asyncio.gather(
                *[c.post("/api/v1/tickets/validate", json={"ticket": ticket}, headers=AUTH) for _ in range(6)]
            )

    statuses = sorted(r.status_code for r in asyncio.run(go()))
    assert statuses == [200] + [410] * 5
