"""`next` validation: only relative paths inside the app; everything hostile falls back to home."""

from __future__ import annotations

import pytest

from bot.auth.nextpath import safe_next
from bot.auth.urls import landing_url

H5 = "https://sign.example.com/h5/#/pages/login/login_pro"
PC = "https://sign.example.com/pc/"

HOSTILE = [
    "//evil.com",
    "///evil.com",
    "////evil.com/x",
    "https://evil.com",
    "http://evil.com/pages/x",
    "HTTPS://evil.com",
    "http:evil.com",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "evil.com/pages/x",
    "pages/x",
    "\\\\evil.com",
    "/\\evil.com",
    "/\\/evil.com",
    "/pages\\..\\..\\evil",
    "%2F%2Fevil.com",
    "/%2F%2Fevil.com",
    "/%2f%2fevil.com",
    "/%252F%252Fevil.com",
    "/%25252F%25252Fevil.com",
    "/%5Cevil.com",
    "/%5cevil.com",
    "%5C%5Cevil.com",
    "/pages/x\r\nSet-Cookie: a=b",
    "/pages/x%0d%0aLocation:%20https://evil.com",
    "/pages/x%0aX",
    "/%00/evil",
    "/pages/x\x00",
    "\t//evil.com",
    " //evil.com",
    "%09//evil.com",
    "/ /evil.com",
    "/pages/\u202eevil",
    "/pages/\u200bx",
    "\uff0f\uff0fevil.com",
    "/\uff0fevil.com",
    "/../../../etc/passwd",
    "/pages/../../admin",
    "/pages/%2e%2e/%2e%2e/admin",
    "/./pages",
    "/javascript:alert(1)",
    "/%6A%61%76%61%73%63%72%69%70%74:alert(1)",
    "/pages/x#//evil.com",
    "/pages/x%23/../../evil",
    "/pages/%ff%fe",
    "/" + "a" * 3000,
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_next_falls_back_to_home(value):
    assert safe_next(value) is None


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_next_never_leaves_the_app(value):
    # Whatever the validator says, the landing URL stays on the 微签 origin and app.
    for landing in (H5, PC):
        url = landing_url(landing, safe_next(value), "TICKET")
        assert url.startswith(landing.split("#")[0])
        assert "evil" not in url


def test_at_least_fifteen_hostile_values():
    assert len(HOSTILE) >= 15


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/pages/task/task_detail?id=T-1001", "/pages/task/task_detail?id=T-1001"),
        ("/pages/index/index", "/pages/index/index"),
        ("/pages/x?name=%E5%90%88%E5%90%8C", "/pages/x?name=%E5%90%88%E5%90%8C"),
        ("/pages/x?name=合同", "/pages/x?name=%E5%90%88%E5%90%8C"),
        ("/pages/x?back=%2Fpages%2Fy&a=1", "/pages/x?back=%2Fpages%2Fy&a=1"),
        ("/pages/x?t=2026-12-01T18:00:00", "/pages/x?t=2026-12-01T18:00:00"),
        ("/tasks/T-1001/.well", "/tasks/T-1001/.well"),
    ],
)
def test_paths_inside_the_app_are_kept(value, expected):
    assert safe_next(value) == expected


@pytest.mark.parametrize("value", [None, "", "/"])
def test_no_next_is_home(value):
    assert safe_next(value) is None
