"""Browser stand-ins for WeCom's login pages: the in-app OAuth authorize page
(`/connect/oauth2/authorize`, WECOM_OAUTH_BASE) and the PC QR-login page (`/wwlogin/sso/login`,
WECOM_SSO_BASE). They check the parameters the way WeCom does (docs/wecom.md, "OAuth and web login"), let a person pick a
member, and redirect to redirect_uri with a single-use code and the original state."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse
from starlette.routing import Route

from .state import Sim

STATE = re.compile(r"[A-Za-z0-9]{0,128}")
SCOPES = ("snsapi_base", "snsapi_privateinfo")
SIM_PARAMS = ("sim_userid", "sim_openid", "sim_refuse")
SHOWN_USERS = 8

STYLE = """<style>body{font-family:-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;background:#f5f6f7;
margin:0;padding:24px;color:#222}.box{max-width:440px;margin:0 auto;background:#fff;border-radius:8px;padding:24px;
box-shadow:0 1px 4px rgba(0,0,0,.08)}h1{font-size:18px;margin:0 0 12px}.muted{color:#888;font-size:13px}
a.user{display:block;padding:10px 12px;margin:6px 0;border:1px solid #e5e5e5;border-radius:6px;color:#222;
text-decoration:none}a.user:hover{border-color:#1aad19}.err{color:#d93025}.qr{width:160px;height:160px;margin:12px auto;
border:8px solid #222;display:flex;align-items:center;justify-content:center;font-size:12px;color:#888}
input{padding:8px;border:1px solid #ccc;border-radius:4px}button{padding:8px 14px;border:0;border-radius:4px;
background:#1aad19;color:#fff}</style>"""


def _page(title: str, body: str, errcode: int | None = None) -> HTMLResponse:
    doc = (
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{html.escape(title)}</title>'
        f'{STYLE}</head><body><div class="box">{body}</div></body></html>'
    )
    headers = {"X-Sim-Errcode": str(errcode)} if errcode is not None else {}
    return HTMLResponse(doc, headers=headers)


def _error(title: str, detail: str, errcode: int) -> HTMLResponse:
    body = (
        f'<h1 class="err">{html.escape(title)}</h1><p>{html.escape(detail)}</p>'
        f'<p class="muted">错误码：{errcode}（企业微信模拟器）</p>'
    )
    return _page("出错了", body, errcode)


def with_code(redirect_uri: str, code: str | None, state: str) -> str:
    """redirect_uri with code and state added to its query (before any #fragment)."""
    parts = urlsplit(redirect_uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if code is not None:
        query.append(("code", code))
    query.append(("state", state))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _check_redirect(redirect_uri: str | None, domains: tuple[str, ...], what: str) -> HTMLResponse | None:
    if not redirect_uri:
        return _error("参数错误", "缺少 redirect_uri（需 URL 编码的完整回调地址）", 40058)
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return _error(
            "参数错误", f"redirect_uri 不是完整的 http(s) 地址：{redirect_uri}（是否忘了 URL 编码，或被截断？）", 40058
        )
    if parts.netloc.lower() not in {d.lower() for d in domains}:
        shown = "、".join(domains) or "（未设置）"
        return _error(
            "redirect_uri需使用应用可信域名",
            f"redirect_uri 的域名 {parts.netloc} 不是应用的{what}：{shown}。"
            "域名须与配置完全一致（包括端口），不支持通配或上级域名匹配。",
            50001,
        )
    return None


def _candidates(sim: Sim) -> list:
    out = []
    for u in sim.directory.users.values():
        if u.status == 1 and sim.visible_user(u):
            out.append(u)
            if len(out) >= SHOWN_USERS:
                break
    return out


def _pick_link(request: Request, **extra) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in SIM_PARAMS]
    params += list(extra.items())
    return html.escape(request.url.path + "?" + urlencode(params))


def _choice(sim: Sim, request: Request, scope: str | None) -> tuple[str | None, str | None, bool]:
    """(userid, openid, refused) from the pick in the URL or the control API's auto-pick."""
    q = request.query_params
    if q.get("sim_refuse"):
        return None, None, True
    if q.get("sim_userid"):
        return q["sim_userid"], None, False
    if q.get("sim_openid"):
        return None, q["sim_openid"], False
    auto = sim.oauth_auto
    if auto:
        return auto.get("userid"), auto.get("openid"), False
    return None, None, False


async def oauth_authorize(request: Request):
    sim: Sim = request.app.state.sim
    cfg = sim.cfg
    q = request.query_params
    if q.get("appid") != cfg.corp_id:
        return _error("参数错误", f"appid 必须是企业的 CorpID（收到：{q.get('appid') or '空'}）", 40013)
    bad = _check_redirect(q.get("redirect_uri"), (cfg.redirect_domain,), "可信域名（网页授权及JS-SDK）")
    if bad is not None:
        return bad
    if q.get("response_type") != "code":
        return _error("参数错误", "response_type 必须为 code", 40058)
    scope = q.get("scope")
    if scope not in SCOPES:
        return _error("参数错误", f"scope 必须为 snsapi_base 或 snsapi_privateinfo（收到：{scope or '空'}）", 40058)
    state = q.get("state", "")
    if not STATE.fullmatch(state):
        return _error("参数错误", "state 只能由字母和数字组成，最长 128 字节", 40058)
    agentid = q.get("agentid")
    if agentid is not None and agentid != str(cfg.agent_id):
        return _error("参数错误", f"agentid {agentid} 不是本应用（{cfg.agent_id}）", 40056)
    if scope == "snsapi_privateinfo" and agentid is None:
        return _error("参数错误", "scope 为 snsapi_privateinfo 时必须带 agentid", 40058)
    userid, openid, refused = _choice(sim, request, scope)
    if refused:
        return RedirectResponse(with_code(q["redirect_uri"], None, state), status_code=302)
    if userid:
        u = sim.directory.user(userid)
        if u is None:
            return _error("成员不存在", f"通讯录中没有 {userid}", 60111)
        return RedirectResponse(
            with_code(q["redirect_uri"], sim.issue_code(userid=u.userid, scope=scope), state), status_code=302
        )
    if openid:
        return RedirectResponse(
            with_code(q["redirect_uri"], sim.issue_code(openid=openid, scope=scope), state), status_code=302
        )
    consent = (
        ('<p class="muted">该应用申请获取你的手机号、邮箱等敏感信息（snsapi_privateinfo），选择成员即表示同意。</p>')
        if scope == "snsapi_privateinfo"
        else ""
    )
    items = "".join(
        f'<a class="user" href="{_pick_link(request, sim_userid=u.userid)}">'
        f'{html.escape(u.name)} <span class="muted">{html.escape(u.userid)} · '
        f"{html.escape(sim.directory.departments[u.main_department].name)}</span></a>"
        for u in _candidates(sim)
    )
    body = (
        f"<h1>{html.escape(cfg.agent_name)} 请求获取你的身份</h1>"
        f'<p class="muted">{html.escape(cfg.corp_name)} · 企业微信网页授权（模拟器）</p>{consent}'
        f"<p>以谁的身份进入？</p>{items}"
        f'<a class="user" href="{_pick_link(request, sim_openid="oSimOutsider0001")}">'
        f'非企业成员 <span class="muted">只返回 openid</span></a>'
        f'<form method="get" action="{html.escape(request.url.path)}">'
        + "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in q.multi_items()
            if k not in SIM_PARAMS
        )
        + '<p><input name="sim_userid" placeholder="或输入成员账号 userid"> <button>进入</button></p></form>'
        f'<p><a href="{_pick_link(request, sim_refuse="1")}">拒绝</a></p>'
    )
    return _page("企业微信授权", body)


async def sso_login(request: Request):
    sim: Sim = request.app.state.sim
    cfg = sim.cfg
    q = request.query_params
    login_type = q.get("login_type")
    if login_type != "CorpApp":
        return _error("参数错误", f"login_type 须为 CorpApp（自建应用；收到：{login_type or '空'}）", 40058)
    if q.get("appid") != cfg.corp_id:
        return _error("参数错误", f"appid 必须是企业的 CorpID（收到：{q.get('appid') or '空'}）", 40013)
    agentid = q.get("agentid")
    if agentid != str(cfg.agent_id):
        return _error("参数错误", f"agentid 须为本应用的 AgentId {cfg.agent_id}（收到：{agentid or '空'}）", 40056)
    bad = _check_redirect(q.get("redirect_uri"), cfg.sso_domains(), "可信域名或 Web 网页授权回调域")
    if bad is not None:
        return bad
    state = q.get("state", "")
    if len(state.encode()) > 128:
        return _error("参数错误", "state 最长 128 字节", 40058)
    userid, openid, refused = _choice(sim, request, None)
    if refused:
        return RedirectResponse(with_code(q["redirect_uri"], None, state), status_code=302)
    if userid:
        u = sim.directory.user(userid)
        if u is None:
            return _error("成员不存在", f"通讯录中没有 {userid}", 60111)
        if not sim.visible_user(u):
            return _error("无权限", f"{u.name} 不在应用「{cfg.agent_name}」的可见范围内，无法登录", 60011)
        return RedirectResponse(
            with_code(q["redirect_uri"], sim.issue_code(userid=u.userid, via="sso"), state), status_code=302
        )
    items = "".join(
        f'<a class="user" href="{_pick_link(request, sim_userid=u.userid)}">'
        f'{html.escape(u.name)} <span class="muted">{html.escape(u.userid)}</span></a>'
        for u in _candidates(sim)
    )
    body = (
        f'<h1>企业微信扫码登录</h1><p class="muted">{html.escape(cfg.corp_name)} · {html.escape(cfg.agent_name)}'
        f'（模拟器）</p><div class="qr">请使用企业微信扫码</div>'
        f"<p>模拟扫码：选择扫码的成员</p>{items}"
        f'<p><a href="{_pick_link(request, sim_refuse="1")}">在手机上点击“拒绝”</a></p>'
    )
    return _page("企业微信登录", body)


def routes() -> list[Route]:
    return [
        Route("/connect/oauth2/authorize", oauth_authorize, methods=["GET"]),
        Route("/wwlogin/sso/login", sso_login, methods=["GET"]),
    ]
