"""One ASGI app serves the whole emulator: WeCom's server API (/cgi-bin/…), the login pages
(/connect/oauth2/authorize, /wwlogin/sso/login) and the control API (/sim/…)."""

from __future__ import annotations

import html

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from . import api, control, pages
from .config import SimConfig
from .state import Sim


async def index(request: Request) -> HTMLResponse:
    sim: Sim = request.app.state.sim
    base = str(request.base_url).rstrip("/")
    d = sim.directory
    rows = "".join(
        f"<tr><td>{html.escape(u.name)}</td><td>{html.escape(u.userid)}</td>"
        f"<td>{html.escape(d.departments[u.main_department].name)}</td><td>{html.escape(u.position)}</td></tr>"
        for u in list(d.users.values())[:20]
    )
    body = f"""<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>企业微信模拟器</title></head>
<body style="font-family:sans-serif;max-width:900px;margin:24px auto">
<h1>企业微信模拟器 · {html.escape(sim.cfg.corp_name)}</h1>
<p>{len(d.users)} 名成员，{len(d.departments)} 个部门；已收到 {sim.call_seq} 次 API 调用。</p>
<pre>WECOM_API_BASE={base}
WECOM_OAUTH_BASE={base}
WECOM_SSO_BASE={base}
WECOM_CORP_ID={html.escape(sim.cfg.corp_id)}
WECOM_AGENT_ID={sim.cfg.agent_id}</pre>
<p>控制接口：<a href="/sim">/sim</a> · <a href="/sim/calls/summary">API 调用统计</a> ·
<a href="/sim/cards">卡片</a> · <a href="/sim/messages">消息</a> · <a href="/sim/callbacks">回调</a></p>
<table border="1" cellpadding="4" style="border-collapse:collapse"><tr><th>姓名</th><th>账号</th><th>部门</th><th>职务</th></tr>
{rows}</table></body></html>"""
    return HTMLResponse(body)


def create_app(config: SimConfig | None = None, sim: Sim | None = None) -> Starlette:
    sim = sim or Sim(config or SimConfig())
    routes = [
        Route("/", index, methods=["GET"]),
        Route("/cgi-bin/{path:path}", api.handle, methods=["GET", "POST"]),
        *pages.routes(),
        *control.routes(),
    ]
    app = Starlette(routes=routes)
    app.state.sim = sim
    return app
