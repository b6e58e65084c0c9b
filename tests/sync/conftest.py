"""Fixtures the sync tests share."""

from __future__ import annotations

import pytest

from tests.sync.support import FakeWeCom


@pytest.fixture
def fake(settings, store):
    """WeCom's directory API faked at its HTTP edge, with the standard directory
    (tests/sync/support.py `FakeWeCom.standard`); the WeCom clients start afresh."""
    from bot.wecom import reset_clients

    reset_clients()
    f = FakeWeCom(settings).standard()
    with f.mounted():
        yield f
    reset_clients()
