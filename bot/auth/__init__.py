"""Login into 微签 through WeCom (the 微签 manual's 功能点 3 and 4).

- `GET /oauth/h5?next=PATH`       in WeCom's browser: → WeCom OAuth → `/oauth/h5/callback` → H5_URL
- `GET /wx/qrlogin?next=PATH`     any other browser: → WeCom QR login → `/wx/login` → PC_URL
- `GET /login?next=PATH`          one entry for both, chosen by the user agent
- `POST /api/v1/tickets/validate` (bot/api/tickets.py) 微签 redeems the ticket once

Modules: views.py (the routes), urls.py (WeCom URLs, where 微签 lands), nextpath.py (`next`
validation), identity.py (directory lookup, private fields), domain.py (可信域名 check),
pages.py + templates/ (Chinese error pages), links.py (links into the H5 through /oauth/h5).
Tables: store/login.py; expired states and tickets are purged by a periodic job (jobs.py).
ratelimit.py bounds how fast one client may start logins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import jobs, views

if TYPE_CHECKING:
    from bot.registry import Registry


def contribute(app: Registry) -> None:
    starts = views.LoginStarts(app.settings)
    app.route("/oauth/h5", starts.h5)
    app.route("/oauth/h5/callback", views.finish_h5)
    app.route("/wx/qrlogin", starts.pc)
    app.route("/wx/login", views.finish_pc)
    app.route("/login", starts.choose)
    app.periodic(jobs.purge_logins)
