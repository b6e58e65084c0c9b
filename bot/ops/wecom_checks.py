"""The checks /admin/wecom runs before it saves: `wqbot doctor`'s WeCom checks (gettoken with each
secret, agent/get and its 可信域名, the 通讯录 secret's read rights), answered per form field in
Chinese with the fix. Run against the values being saved, with a client of their own (no shared
token cache is touched)."""

from __future__ import annotations

from urllib.parse import urlsplit

from bot.wecom import BadCredentials, IPNotAllowed, NoPrivilege, WeComClient, WeComError
from settings import Settings

APP_PAGE = "企业微信管理后台 → 应用管理 → 自建应用 → （微签应用）"
CONTACTS_PAGE = "企业微信管理后台 → 管理工具 → 通讯录同步"
GENERAL = "_general"  # a problem no single field owns
TRUSTED_DOMAIN = "_trusted_domain"


def _token_problem(e: WeComError, field: str, label: str, page: str) -> tuple[str, str]:
    code = getattr(e, "errcode", None)
    if isinstance(e, IPNotAllowed) or code == 60020:
        ip = getattr(e, "ip", "") or "本服务器的出口 IP"
        return field, f"{ip} 不在企业可信IP中（60020）：请在 {APP_PAGE} → 企业可信IP 中添加 {ip}。"
    if code == 40013:
        return "WECOM_CORP_ID", "企业ID 不正确（40013）：请从 企业微信管理后台 → 我的企业 → 企业信息 复制企业ID。"
    if isinstance(e, BadCredentials) or code in (40001, 40004):
        return field, f"{label}不正确（{code}）：请从 {page} → Secret 点“查看”后复制完整的值。"
    if code is None:
        return GENERAL, "无法连接企业微信 API：请检查本服务器能否访问 WECOM_API_BASE（网络、代理、防火墙）。"
    return field, f"{label}未通过检查（错误码 {code}）：请核对 {page} 中的设置。"


def run(s: Settings, client: WeComClient | None = None) -> dict[str, str]:
    """Problems by form field (environment name, or GENERAL / TRUSTED_DOMAIN); empty: all passed."""
    wecom = client or WeComClient(s, sleep=lambda _: None)  # its own tokens: the shared cache is not touched
    try:
        return _run(s, wecom)
    finally:
        if client is None:
            wecom.http.close()


def _run(s: Settings, wecom: WeComClient) -> dict[str, str]:
    problems: dict[str, str] = {}
    app_ok = False
    try:
        wecom._gettoken("app")
        app_ok = True
    except WeComError as e:
        field, text = _token_problem(e, "WECOM_APP_SECRET", "自建应用密钥", APP_PAGE)
        problems[field] = text
    if s.wecom_contacts_secret:
        try:
            wecom._gettoken("contacts")
            try:
                wecom.department_list(creds="contacts")
            except NoPrivilege as e:
                if getattr(e, "errcode", None) != 48009:  # 48009: full reads refused, list_id still works
                    problems["WECOM_CONTACTS_SECRET"] = (
                        f"通讯录密钥没有读取通讯录的权限（{getattr(e, 'errcode', '')}）：请在 {CONTACTS_PAGE} → "
                        "API接口同步 中开启，并把权限设为“可读”或“可编辑”。"
                    )
        except WeComError as e:
            field, text = _token_problem(e, "WECOM_CONTACTS_SECRET", "通讯录密钥", CONTACTS_PAGE)
            problems.setdefault(field, text)
    if app_ok:
        try:
            agent = wecom.agent_get()
        except WeComError as e:
            code = getattr(e, "errcode", None)
            problems["WECOM_AGENT_ID"] = (
                f"应用ID {s.wecom_agent_id} 与自建应用密钥不属于同一个应用（{code}）：请从 {APP_PAGE} 复制 "
                "AgentId 和 Secret。"
            )
        else:
            want = urlsplit(s.public_url).netloc
            have = (agent.get("redirect_domain") or "").strip().rstrip("/")
            if agent.get("close"):
                problems["WECOM_AGENT_ID"] = f"应用ID {s.wecom_agent_id} 对应的应用已停用：请在 {APP_PAGE} 中启用。"
            elif have.lower() != want.lower():
                problems[TRUSTED_DOMAIN] = (
                    f"应用的可信域名是“{have or '未设置'}”，但 PUBLIC_URL 的主机是 {want}：请在 {APP_PAGE} → "
                    f"网页授权及JS-SDK → 可信域名 填写 {want}（或把 PUBLIC_URL 改成与之一致）。"
                )
    return problems
