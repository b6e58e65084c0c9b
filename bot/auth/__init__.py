"""Login into 微签 through WeCom (issue 7, 功能点 3 and 4 of the 微签 manual).

- `GET /oauth/h5?next=PATH`       in WeCom's browser: → WeCom OAuth → `/oauth/h5/callback` → H5_URL
- `GET /wx/qrlogin?next=PATH`     any other browser: → WeCom QR login → `/wx/login` → PC_URL
- `GET /login?next=PATH`          one entry for both, chosen by the user agent
- `POST /api/v1/tickets/validate` (bot/api/tickets.py) 微签 redeems the ticket once

Modules: views.py (the routes), urls.py (WeCom URLs, where 微签 lands), nextpath.py (`next`
validation), identity.py (directory lookup, private fields), domain.py (可信域名 check),
pages.py + templates/ (Chinese error pages). Tables: store/login.py.
"""

from __future__ import annotations

from starlette.routing import Route

from . import views


def routes(settings) -> list[Route]:
    return [
        Route("/oauth/h5", views.start_h5, methods=["GET"]),
        Route("/oauth/h5/callback", views.finish_h5, methods=["GET"]),
        Route("/wx/qrlogin", views.start_pc, methods=["GET"]),
        Route("/wx/login", views.finish_pc, methods=["GET"]),
        Route("/login", views.choose, methods=["GET"]),
    ]
