"""Fixtures the reliability tests share."""

from __future__ import annotations

import dataclasses

import pytest

from tests.reliability.hostile import PUBLIC, fake_wecom, seed


@pytest.fixture
def clients(settings, store, queue):
    """{"app": a client of the app alone, "served": of the app behind the stack `wqbot serve`
    runs (BodyTimeout, CallbackFastPath)}, over a seeded store (tests/reliability/hostile.py
    `seed`), WeCom faked at its HTTP edge. Both are tests/support.py `CallbackClient`s."""
    import respx

    from bot.app import create_app
    from bot.auth import domain
    from bot.server import stack
    from bot.wecom import reset_clients
    from tests.support import CallbackClient

    reset_clients()
    domain.forget()
    # These tests start hundreds of logins from one client: the per-client limit (tested on its
    # own in tests/auth) would answer most of them with 429 before the input under test is read.
    settings = dataclasses.replace(settings, login_starts_per_minute=1_000_000)
    app = create_app(settings, init_store=False)
    with respx.mock(assert_all_called=False) as mock:
        fake_wecom(mock)
        with (
            CallbackClient(settings, app, base_url=PUBLIC, follow_redirects=False) as plain,
            CallbackClient(settings, stack(app), base_url=PUBLIC, follow_redirects=False) as served,
        ):
            seed(plain)
            yield {"app": plain, "served": served}
    reset_clients()
    domain.forget()
