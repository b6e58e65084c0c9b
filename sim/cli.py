"""`wqbot sim`: serve the emulator under uvicorn and print how to point wqbot at it."""

from __future__ import annotations

import sys

from .app import create_app
from .config import SECRET_NAMES, SimConfig
from .server import bind
from .state import Sim


def config_from_args(args) -> SimConfig:
    def flag(name):
        return True if getattr(args, name, False) else None  # unset flags leave the default alone

    return SimConfig.from_env(
        users=args.users,
        departments=args.departments,
        seed=args.seed,
        callback_url=args.callback_url or None,
        contacts_callback_url=args.contacts_callback_url or None,
        token_expires_in=getattr(args, "token_expires_in", None),
        hide_private=flag("hide_private"),
        contacts_new_ip=flag("contacts_new_ip"),
        ids_only_callbacks=flag("ids_only_callbacks"),
        redirect_domain=getattr(args, "redirect_domain", None) or None,
    )


def banner(cfg: SimConfig, url: str, generated_in: float, n_users: int, n_depts: int) -> str:
    sources = getattr(cfg, "sources", {})
    values = {
        "WECOM_CORP_ID": cfg.corp_id,
        "WECOM_AGENT_ID": str(cfg.agent_id),
        "WECOM_APP_SECRET": cfg.app_secret,
        "WECOM_CONTACTS_SECRET": cfg.contacts_secret,
        "WECOM_TOKEN": cfg.token,
        "WECOM_AES_KEY": cfg.aes_key,
        "WECOM_CONTACTS_TOKEN": cfg.contacts_token,
        "WECOM_CONTACTS_AES_KEY": cfg.contacts_aes_key,
    }
    lines = [
        f"wqbot sim: WeCom emulator for {cfg.corp_name} at {url}",
        f"  directory: {n_users} members, {n_depts} departments (seed {cfg.seed}, generated in {generated_in:.2f} s)",
        f"  control API: {url}/sim   (docs/sim.md)",
        f"  app callback:      {cfg.callback_url or '(none: set --callback-url to receive events and send cards)'}",
        f"  contacts callback: {cfg.contacts_callback_url or '(none: change_contact goes to the app callback)'}",
        f"  OAuth 可信域名: {cfg.redirect_domain}",
        "",
        "Point wqbot at it (environment or .env):",
        f"  WECOM_API_BASE={url}",
        f"  WECOM_OAUTH_BASE={url}",
        f"  WECOM_SSO_BASE={url}",
    ]
    for name, value in values.items():
        if sources.get(name) == "env":
            shown = "(from your environment)" if name in SECRET_NAMES else value
            lines.append(f"  {name}={shown}" if name not in SECRET_NAMES else f"  {name} {shown}")
        else:
            lines.append(f"  {name}={value}")  # the emulator's built-in development value
    lines += [
        f"  PUBLIC_URL=http://{cfg.redirect_domain}   (the 可信域名 this emulator's app trusts)",
        "  H5_URL=…                 (微签 H5's login page; any http(s) URL for a test)",
        "  SECRET_KEY, WEIQIAN_API_TOKEN: `wqbot init` writes a .env with both generated",
    ]
    return "\n".join(lines)


def main(args) -> int:
    import uvicorn

    cfg = config_from_args(args)
    try:
        sock = bind(args.host, args.port)
    except OSError as e:
        print(
            f"wqbot sim: cannot listen on {args.host}:{args.port} ({e.strerror}): pick another --port", file=sys.stderr
        )
        return 2
    sim = Sim(cfg)
    host = args.host if args.host not in ("0.0.0.0", "::") else "127.0.0.1"
    url = f"http://{host}:{sock.getsockname()[1]}"
    print(banner(cfg, url, sim.generated_in, len(sim.directory.users), len(sim.directory.departments)), flush=True)
    config = uvicorn.Config(create_app(sim=sim), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
