"""The Chinese error pages of a login: what happened, what the employee can do, what the
operator must fix (naming the setting or the WeCom console page). Never a secret, code or ticket.

Each problem is a function of the settings (and a few facts) returning a `Problem`; `page()`
renders it with templates/error.html (Jinja2, autoescaped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

from settings import Settings

from .urls import h5_redirect_uri, pc_redirect_uri, public_host

_env = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")), autoescape=select_autoescape(["html"])
)

RETRY = "请回到企业微信，重新点击应用进入；电脑端请重新打开登录页扫码。"
CONSOLE_APP = "企业微信管理后台 → 应用管理 → 自建应用 → （本应用）"


@dataclass
class Problem:
    status: int
    code: str
    title: str
    cause: str
    fix: list[str] = field(default_factory=list)
    admin: list[str] = field(default_factory=list)
    errcode: int | None = None


def page(problem: Problem, retry_url: str | None = None) -> HTMLResponse:
    return HTMLResponse(_render(problem, retry_url), status_code=problem.status, headers=NO_STORE)


@lru_cache(maxsize=64)
def too_many_starts_page(retry_after: int) -> str:
    """The 429 page, rendered once per wait: a flood of refused starts costs no rendering."""
    return _render(too_many_starts(retry_after))


def _render(problem: Problem, retry_url: str | None = None) -> str:
    return _env.get_template("error.html").render(
        title=problem.title,
        cause=problem.cause,
        fix=problem.fix,
        admin=problem.admin,
        code=problem.code,
        errcode=problem.errcode,
        retry_url=retry_url,
    )


NO_STORE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


def _flow_name(flow: str) -> str:
    return "企业微信内打开（H5 网页授权）" if flow == "h5" else "电脑端扫码登录"


# -- configuration -------------------------------------------------------------------------------
def not_configured(settings: Settings, flow: str) -> Problem:
    var = "H5_URL" if flow == "h5" else "PC_URL"
    example = "https://微签域名/h5/#/pages/login/login_pro" if flow == "h5" else "https://微签域名/pc/"
    return Problem(
        503,
        f"{var.lower()}_not_set",
        "登录入口尚未配置",
        f"wqbot 不知道登录后要打开微签的哪个地址：{var} 没有设置。",
        ["请联系管理员。"],
        [f"在 wqbot 的环境变量或 .env 中设置 {var}（例如 {example}），然后重启 wqbot。"],
    )


def wecom_off(settings: Settings) -> Problem:
    """开启企业微信 is off, or WeCom is not configured yet (setup mode)."""
    if not settings.wecom_configured:
        return Problem(
            503,
            "wecom_not_configured",
            "企业微信尚未配置",
            "管理员还没有在 wqbot 中填写企业微信参数，暂时不能用企业微信登录。",
            ["请联系管理员，或使用微签的其他登录方式。"],
            ["在 wqbot 管理后台 → 企业微信参数（/admin/wecom）填写企业ID、应用ID和密钥，并打开 开启企业微信。"],
        )
    return Problem(
        503,
        "wecom_off",
        "企业微信登录已关闭",
        "管理员关闭了 开启企业微信，暂时不能用企业微信登录微签。",
        ["请使用微签的其他登录方式，或联系管理员。"],
        ["在 wqbot 管理后台 → 企业微信参数（/admin/wecom）打开 开启企业微信（或设置 WECOM_ENABLED=true）。"],
    )


def trusted_domain_mismatch(settings: Settings, configured: str) -> Problem:
    host = public_host(settings)
    return Problem(
        403,
        "trusted_domain_mismatch",
        "可信域名与 wqbot 地址不一致",
        f"企业微信只允许跳回应用“可信域名”下的地址。本应用的可信域名是 {configured}，"
        f"而 wqbot 的地址（PUBLIC_URL）是 {host}，企业微信会拒绝这次登录（redirect_uri 与可信域名不一致）。",
        ["请联系管理员。"],
        [
            f"{CONSOLE_APP} → 开发者接口 → 网页授权及JS-SDK → 设置可信域名：填写 {host}"
            "（只填域名，有非默认端口时连端口一起填，例如 example.com:8443；不要带 http:// 或路径）；",
            f"或者把 PUBLIC_URL 改成可信域名下 wqbot 的地址（当前回调地址：{h5_redirect_uri(settings)}）。",
            "可信域名需完成域名归属验证（把 WW_verify_*.txt 放到域名根目录）。",
        ],
    )


# -- the state -----------------------------------------------------------------------------------
def state_refused(settings: Settings, reason: str, flow: str, record_flow: str | None = None) -> Problem:
    if reason == "missing":
        return Problem(
            400,
            "state_missing",
            "登录链接不完整",
            "跳回 wqbot 的地址缺少 code 或 state 参数，无法确认这是本服务发起的登录。",
            [RETRY],
            [
                f"应用主页、菜单和 PC 登录按钮请使用 wqbot 生成的入口：H5 为 {settings.public_url}/oauth/h5，"
                f"PC 为 {settings.public_url}/wx/qrlogin，不要手工拼接企业微信授权链接。"
            ],
        )
    if reason == "unknown":
        return Problem(
            400,
            "state_unknown",
            "无法识别的登录请求",
            "链接里的 state 不是本服务签发的：链接可能被改动过、来自另一套 wqbot，或数据库被重置过。",
            [RETRY],
            ["多台 wqbot 必须共用同一个 DATABASE_URL 和 SECRET_KEY。"],
        )
    if reason == "expired":
        return Problem(
            400, "state_expired", "登录已超时", "从打开登录到完成授权超过了 10 分钟，这次登录已失效。", [RETRY]
        )
    if reason == "used":
        return Problem(
            400,
            "state_used",
            "登录链接已被使用",
            "每个登录链接只能使用一次。页面被刷新、后退，或被浏览器重复打开时会出现这个提示。",
            [RETRY],
        )
    if reason == "wrong_flow":
        return Problem(
            400,
            "state_wrong_flow",
            "登录方式不匹配",
            f"这次登录是以“{_flow_name(record_flow or '')}”方式发起的，却跳回了“{_flow_name(flow)}”的地址。",
            [RETRY],
            [
                f"H5 网页授权的回调地址必须是 {h5_redirect_uri(settings)}；",
                f"PC 扫码登录的重定向URL（微签“企业微信参数设置”）必须是 {pc_redirect_uri(settings)}。",
            ],
        )
    return Problem(
        403,
        "state_wrong_browser",
        "登录会话不匹配",
        "完成授权的浏览器不是发起登录的那个，或浏览器没有保存 wqbot 的 Cookie。"
        "为防止他人借用你的登录，这次登录被拒绝。",
        ["请在同一个浏览器里重新登录，并允许该网站使用 Cookie。", RETRY],
        [f"入口链接必须使用 PUBLIC_URL 的域名（{public_host(settings)}），否则发起登录时的 Cookie 带不到回调地址。"],
    )


def cancelled() -> Problem:
    return Problem(
        400, "login_cancelled", "已取消登录", "企业微信没有返回登录码：你可能取消了授权或扫码确认。", [RETRY]
    )


def too_many_starts(retry_after: int) -> Problem:
    return Problem(
        429,
        "login_too_frequent",
        "登录请求过于频繁",
        "这台设备（或同一网络出口）在一分钟内发起了太多次登录。",
        [f"请 {retry_after} 秒后再试。", RETRY],
        [
            "如果很多员工通过同一个出口 IP 同时登录，请调大 LOGIN_STARTS_PER_MINUTE；"
            "经 nginx 转发时，wqbot serve 需要 --proxy-headers 才能看到员工的真实地址。"
        ],
    )


# -- WeCom's answers -------------------------------------------------------------------------------
def code_invalid(settings: Settings) -> Problem:
    return Problem(
        400,
        "code_invalid",
        "登录码已失效",
        "企业微信的登录码只能使用一次，且在 5 分钟内有效。这个登录码已经用过或已过期"
        "（常见原因：刷新了页面、浏览器预加载或重复打开了回调链接、或在 5 分钟后才返回）。",
        [RETRY],
        [
            "如果经常出现：确认只有 wqbot 在用这个回调地址兑换登录码（不要让微签后端或其他服务也调用 "
            "auth/getuserinfo），并检查服务器时间和网络延迟。"
        ],
        errcode=40029,
    )


def no_privilege(settings: Settings, errcode: int, hint: str = "") -> Problem:
    if errcode == 50001:
        host = public_host(settings)
        return Problem(
            403,
            "redirect_domain_mismatch",
            "可信域名配置不正确",
            f"企业微信拒绝了这次登录（错误码 50001：redirect_uri 未登记为可信域名，或用其他应用的 Secret 兑换了登录码）。"
            f"wqbot 的回调域名是 {host}。",
            ["请联系管理员。"],
            [
                f"{CONSOLE_APP} → 网页授权及JS-SDK → 可信域名：填写 {host}（含非默认端口，不带 http://）；",
                f"{CONSOLE_APP} → 企业微信授权登录 → Web网页 → 授权回调域：同样填写 {host}；",
                "WECOM_APP_SECRET 必须是 WECOM_AGENT_ID 这个应用的 Secret（不能用通讯录同步 Secret）。",
            ],
            errcode=50001,
        )
    if errcode in (50002, 60021, 60011):
        return Problem(
            403,
            "not_visible",
            "你不在应用的可见范围内",
            "企业微信表示你的账号不在本应用的可见范围内，无法登录。",
            ["请联系管理员把你加入应用的可见范围。"],
            [f"{CONSOLE_APP} → 可见范围：添加该成员或其部门。"],
            errcode=errcode,
        )
    if errcode == 50003:
        return Problem(
            403,
            "app_disabled",
            "应用已停用",
            "企业微信表示本应用已被停用。",
            ["请联系管理员。"],
            [f"{CONSOLE_APP}：启用应用。"],
            errcode=errcode,
        )
    return wecom_error(errcode, hint)


def wecom_error(errcode: int, hint: str = "") -> Problem:
    admin = [hint] if hint else []
    admin.append("运行 wqbot doctor 检查企业微信配置。")
    return Problem(
        502,
        "wecom_error",
        "企业微信返回了错误",
        f"兑换登录码时企业微信返回错误码 {errcode}，登录没有完成。",
        [RETRY],
        admin,
        errcode=errcode,
    )


def wecom_unreachable() -> Problem:
    return Problem(
        502,
        "wecom_unreachable",
        "暂时连不上企业微信",
        "wqbot 向企业微信确认你的身份时超时或连接失败。",
        ["请稍后重试。", RETRY],
        ["检查服务器能否访问 WECOM_API_BASE（默认 https://qyapi.weixin.qq.com），以及出口 IP 是否在企业可信IP中。"],
    )


# -- the member ------------------------------------------------------------------------------------
def non_member() -> Problem:
    return Problem(
        403,
        "not_a_member",
        "仅限本企业成员登录",
        "企业微信确认了你的身份，但你不是本企业通讯录中的成员（例如外部联系人或个人微信用户），不能登录微签。",
        ["如果你是本企业员工，请联系管理员把你加入企业微信通讯录。"],
    )


def unknown_member(userid: str) -> Problem:
    return Problem(
        403,
        "unknown_member",
        "通讯录中还没有你的账号",
        f"企业微信成员 {userid} 还没有同步到 wqbot，暂时无法登录。",
        ["新加入的成员通常在 10 分钟内完成同步，请稍后再试。"],
        ["运行 wqbot sync 立即同步通讯录；检查应用可见范围是否包含该成员。"],
    )


def disabled_member(userid: str) -> Problem:
    return Problem(
        403,
        "member_disabled",
        "账号已停用",
        f"企业微信成员 {userid} 在通讯录中已停用或离职，不能登录微签。",
        ["如有疑问请联系管理员。"],
    )
