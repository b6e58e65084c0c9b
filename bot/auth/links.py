"""Links that open a 微签 H5 page with the employee already logged in (through /oauth/h5)."""

from __future__ import annotations

from urllib.parse import quote

from settings import Settings


def h5_entry(settings: Settings, next_path: str = "/") -> str:
    """`{PUBLIC_URL}/oauth/h5?next=PATH`: WeCom's in-app browser follows it, OAuth logs the
    member in, and the H5 opens at PATH. PATH is a path inside the H5 app (e.g.
    `/pages/task/task_detail?id=T-1001`); /oauth/h5 re-validates it, so a hostile value here
    can never become an open redirect."""
    return f"{settings.public_url}/oauth/h5?next={quote(next_path or '/', safe='')}"
