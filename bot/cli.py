"""`wqbot`: the one console script (docs/cli.md)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

from bot.observability import logs
from settings import SettingsError, get_settings

# command -> "module:function"; each function takes the parsed args and returns an exit code.
# Imported when the command runs, so each command loads only what it needs (`wqbot menu show`
# neither uvicorn nor the emulator).
COMMANDS = {
    "serve": "bot.server.commands:serve",
    "worker": "bot.server.commands:worker",
    "sync": "bot.sync.cli:main",
    "accounts": "bot.sync.accounts_cli:main",
    "menu": "bot.menus.cli:main",
    "workbench": "bot.workbench.cli:main",
    "doctor": "bot.ops.doctor:main",
    "init": "bot.ops.envfile:main",
    "sim": "sim.cli:main",
    "demo": "sim.demo:main",
}

# Commands that read the console's settings (/admin/wecom) over the environment's.
LIVE = {"serve", "worker", "sync", "accounts", "menu", "workbench"}


def _version() -> str:
    try:
        return version("wqbot")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wqbot", description="WeCom (企业微信) integration for 微签")
    p.add_argument("--version", action="version", version=f"wqbot {_version()}")
    p.add_argument("--log-format", choices=("json", "text"), default=None)
    # the same option after the command (`wqbot sync --log-format text`); SUPPRESS: when not
    # given there, it does not overwrite the value given before the command
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-format", choices=("json", "text"), default=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    s = command("serve", help="web app under uvicorn (+ worker and periodic sync when the queue is embedded)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument(
        "--workers",
        type=int,
        default=None,
        help="web processes (default: one per core on SQLite, else 1); the queue is consumed by one process",
    )
    s.add_argument("--no-worker", action="store_true", help="do not run the queue consumer in this process")
    s.add_argument("--proxy-headers", action="store_true", help="trust X-Forwarded-* from --forwarded-allow-ips")
    s.add_argument("--forwarded-allow-ips", default="127.0.0.1")

    w = command("worker", help="a queue consumer only")
    w.add_argument("--workers", type=int, default=4, help="worker threads")

    y = command("sync", help="one directory sync now")
    y.add_argument("--full", action="store_true")
    y.add_argument("--force", action="store_true", help="apply disables even past SYNC_MAX_DELETE_RATIO")

    a = command("accounts", help="members with no or an ambiguous 微签 account; the userid,account CSV")
    a.add_argument("action", choices=("report", "import"))
    a.add_argument("file", nargs="?", default="", help="import: a CSV of userid,account lines")
    a.add_argument("--csv", action="store_true", help="report: as CSV")

    m = command("menu", help="the app menu")
    m.add_argument("action", choices=("show", "push", "diff"))
    m.add_argument("--file", default=None, help="a menu.toml of your own (default: MENU_FILE, else the shipped one)")

    wb = command("workbench", help="the app's 工作台 tile (待审批 / 待签署 per member)")
    wb.add_argument("action", choices=("push", "fill", "show"))
    wb.add_argument("--restart", action="store_true", help="fill: start over instead of resuming")

    command("doctor", help="check settings and the WeCom side, and say what to fix")

    i = command("init", help="write a commented .env with fresh SECRET_KEY and WEIQIAN_API_TOKEN")
    i.add_argument("--path", default=".env", help="where to write it (default: .env here)")
    i.add_argument("--force", action="store_true", help="overwrite an existing file")

    sim = command("sim", help="the local WeCom emulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8900)
    sim.add_argument("--users", type=int, default=200)
    sim.add_argument("--departments", type=int, default=20)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--callback-url", default="")
    sim.add_argument("--contacts-callback-url", default="")
    sim.add_argument("--token-expires-in", type=int, default=None, help="access token lifetime in seconds (7200)")
    sim.add_argument(
        "--hide-private", action="store_true", help="omit mobile/email/… as for apps made after 2022-06-20"
    )
    sim.add_argument("--contacts-new-ip", action="store_true", help="通讯录同步 detail reads answer 48009 (2022-08-15)")
    sim.add_argument("--ids-only-callbacks", action="store_true", help="change_contact carries IDs only (post-2022)")
    sim.add_argument(
        "--redirect-domain", default="", help="the app's OAuth 可信域名 host[:port] (default: PUBLIC_URL's)"
    )

    d = command("demo", help="everything end to end against the emulator")
    d.add_argument("--keep", action="store_true", help="leave both running for a person to click through")
    return p


def _setup_logging(args: argparse.Namespace) -> None:
    try:
        s = get_settings()
        fmt = args.log_format or s.log_format
        secrets, level = s.secret_values, s.log_level
    except SettingsError:
        fmt, secrets, level = args.log_format or "text", (), "INFO"
    logs.setup(fmt=fmt, level=level, secrets=secrets)


def print_settings_error(e: SettingsError, prog: str = "wqbot") -> None:
    """Every problem of the one pass, each on its line with its fix."""
    n = len(e.problems)
    print(f"{prog}: {n} setting{'s' if n > 1 else ''} to fix (environment or .env):", file=sys.stderr)
    for variable, problem, fix in e.problems:
        print(f"  {variable}: {problem}" + (f"\n      fix: {fix}" if fix else ""), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    target = COMMANDS[args.command]
    module, _, func = target.partition(":")
    if args.command in LIVE:
        importlib.import_module("bot.ops.console_settings").install()
    try:
        fn = getattr(importlib.import_module(module), func)
        return int(fn(args) or 0)
    except SettingsError as e:
        print_settings_error(e)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
