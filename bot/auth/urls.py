"""The URLs of a login: WeCom's authorize and SSO pages, our callbacks, and where 微签 lands.

WeCom compares redirect_uri's host[:port] with the app's 可信域名 character for character
(docs/wecom.md, "OAuth and web login"), so PUBLIC_URL is normalised first: lower-case scheme and host, and no default
port (an explicit ":443" makes WeCom refuse the redirect_uri). Every parameter is percent-encoded,
redirect_uri included (pitfall 16), and `#wechat_redirect` stays last.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlencode, urlsplit, urlunsplit

from settings import Settings

H5_CALLBACK = "/oauth/h5/callback"
PC_CALLBACK = "/wx/login"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _normalise(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port] without a default port, path without trailing slash)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = host if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{host}:{port}"
    return scheme, netloc, parts.path.rstrip("/")


def public_base(settings: Settings) -> str:
    scheme, netloc, path = _normalise(settings.public_url)
    return f"{scheme}://{netloc}{path}"


def public_host(settings: Settings) -> str:
    """host[:port] as the WeCom console wants it in 可信域名 / 授权回调域 (no scheme)."""
    return _normalise(settings.public_url)[1]


def origin(url: str) -> str | None:
    """scheme://host[:port] of an http(s) URL, normalised; None for anything else."""
    try:
        parts = urlsplit(url)
        scheme, netloc, _ = _normalise(url)
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    return f"{scheme}://{netloc}"


def _query(params: list[tuple[str, str]]) -> str:
    return urlencode(params, quote_via=quote, safe="")


def h5_redirect_uri(settings: Settings) -> str:
    return public_base(settings) + H5_CALLBACK


def pc_redirect_uri(settings: Settings) -> str:
    return public_base(settings) + PC_CALLBACK


def authorize_url(settings: Settings, state: str) -> str:
    """In-app H5 OAuth (docs/wecom.md, "OAuth and web login"; `GET /oauth/h5`)."""
    params = [
        ("appid", settings.wecom_corp_id),
        ("redirect_uri", h5_redirect_uri(settings)),
        ("response_type", "code"),
        ("scope", settings.wecom_oauth_scope),
        ("state", state),
        ("agentid", str(settings.wecom_agent_id)),
    ]
    return f"{settings.wecom_oauth_base}/connect/oauth2/authorize?{_query(params)}#wechat_redirect"


def sso_url(settings: Settings, state: str) -> str:
    """PC web login, the current link form (docs/wecom.md, "OAuth and web login"; `GET /wx/qrlogin`)."""
    params = [
        ("login_type", "CorpApp"),
        ("appid", settings.wecom_corp_id),
        ("agentid", str(settings.wecom_agent_id)),
        ("redirect_uri", pc_redirect_uri(settings)),
        ("state", state),
        ("lang", "zh"),
    ]
    return f"{settings.wecom_sso_base}/wwlogin/sso/login?{_query(params)}"


# -- where 微签 lands -----------------------------------------------------------------------------
_QUERY_SEPARATOR = re.compile(r"([&;])")


def with_ticket(target: str, ticket: str) -> str:
    """`target` (a path or URL, no fragment) with `ticket=…` as its last query parameter. Any
    `ticket` already there is dropped, whichever separator carries it ("&" or ";", which some
    servers and routers also split on): a `next` must not smuggle in someone else's ticket."""
    head, _, query = target.partition("?")
    pieces = _QUERY_SEPARATOR.split(query)  # [param, separator, param, separator, …]
    kept = ""
    for i in range(0, len(pieces), 2):
        param = pieces[i]
        if not param or unquote(param.split("=", 1)[0]).strip().lower() == "ticket":
            continue
        kept += (pieces[i - 1] if kept else "") + param
    return head + "?" + (kept + "&" if kept else "") + "ticket=" + quote(ticket, safe="")


def is_hash_routed(landing: str) -> bool:
    return landing.partition("#")[2].startswith("/")


def landing_url(landing: str, next_path: str | None, ticket: str) -> str:
    """Where the browser goes after a login: H5_URL or PC_URL, at `next`, carrying the ticket.

    Hash-routed app (`…/h5/#/pages/login/login_pro`): `next` replaces the route after "#", and
    the ticket joins the route's own query (`#/pages/login/login_pro?ticket=…`), where the
    router hands it to the page (uni-app `onLoad(options)`, vue-router `$route.query`). Being
    in the fragment, it never reaches the H5's web server logs or a Referer header.

    Path-routed app (`…/pc/`): `next` is resolved under the landing URL's folder (`/pc/` +
    `tasks/1`) and the ticket is a query parameter (`…/pc/tasks/1?ticket=…`).
    """
    base, _, fragment = landing.partition("#")
    if fragment.startswith("/"):
        return base + "#" + with_ticket(next_path or fragment, ticket)
    if not next_path:
        url = with_ticket(base, ticket)
        return url + ("#" + fragment if fragment else "")
    parts = urlsplit(base)
    root = parts.path[: parts.path.rfind("/") + 1] if parts.path else "/"
    path, _, query = next_path.partition("?")
    return with_ticket(urlunsplit((parts.scheme, parts.netloc, root.rstrip("/") + path, query, "")), ticket)
