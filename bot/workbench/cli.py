"""`wqbot workbench push | fill | show` (docs/cli.md).

- push: set the app's 工作台 template (keydata: 待审批, 待签署); after that the tiles follow every
  member's pending tasks by themselves (bot/workbench/refresh.py).
- fill: set every active member's tile now (after the first push, or to repair). Resumable: the
  last member done is kept in the store, so an interrupted fill continues there (`--restart`
  starts over). Shows a progress bar and how long it will take at the rate limits.
- show: what WeCom has as the template, and the tiles' state here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from bot.wecom import Limits, TransportError, WeComError, client_for
from settings import Settings, get_settings
from store import db, init_store
from store.directory import User
from store.followup import WorkbenchTile

from . import refresh

FILL_CURSOR_KEY = "workbench:fill_cursor"
CHUNK = 200


def estimate_seconds(n: int, limits: Limits) -> float:
    """How long `n` calls to one API take at the client's limits: each call takes a token from
    the minute and the hour bucket, which refill at once; the slower one decides."""
    worst = 0.0
    for rate, burst in limits.buckets():
        worst = max(worst, (n - burst) / rate)
    return max(0.0, worst)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _client(s: Settings):
    if db.obj is None:
        init_store(s.database_url)
    return client_for(s)


def main(args: argparse.Namespace) -> int:
    s = get_settings()
    client = _client(s)
    try:
        if args.action == "push":
            body = refresh.template_set(s, client)
            print(f"wqbot workbench push: template set ({', '.join(i['key'] for i in body['keydata']['items'])})")
            print("  the tiles now follow each member's tasks; `wqbot workbench fill` sets them all now")
            return 0
        if args.action == "show":
            print(json.dumps(client.workbench_get_template(), ensure_ascii=False, indent=2))
            print(json.dumps(tiles_summary(), ensure_ascii=False))
            return 0
        return fill(s, client, restart=args.restart)
    except TransportError as e:
        print(
            f"wqbot workbench {args.action}: could not reach WeCom at WECOM_API_BASE={s.wecom_api_base}: {e}",
            file=sys.stderr,
        )
        return 1
    except WeComError as e:
        print(f"wqbot workbench {args.action}: WeCom refused: {e}", file=sys.stderr)
        return 1


def tiles_summary() -> dict:
    q = WorkbenchTile.select()
    return {
        "set": q.where(WorkbenchTile.pushed_at.is_null(False)).count(),
        "stale": q.where(WorkbenchTile.dirty == True).count(),  # noqa: E712
        "refused": q.where(WorkbenchTile.error.is_null(False)).count(),
        "template": refresh.template_state() is not None,
    }


def _bar(done: int, total: int, started: float, out=sys.stderr) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    rate = done / max(time.monotonic() - started, 1e-6)
    left = (total - done) / rate if rate > 0 else 0.0
    out.write(f"\r  [{'#' * filled}{'-' * (width - filled)}] {done:,}/{total:,}  {minutes(left)} left   ")
    out.flush()


def fill(s: Settings, client, restart: bool = False, out=sys.stderr, pause: float = 15.0, tries: int = 5) -> int:
    if refresh.template_state() is None:
        print("wqbot workbench fill: run `wqbot workbench push` first (WeCom needs the template)", file=out)
        return 2
    if restart:
        refresh._put(FILL_CURSOR_KEY, "")
    cursor = refresh._get(FILL_CURSOR_KEY) or ""
    members = User.select(User.userid).where(User.active == True)  # noqa: E712
    total = members.count()
    todo = members.where(User.userid > cursor).count()
    limits = Limits.from_settings(s)
    print(
        f"wqbot workbench fill: {todo:,} of {total:,} members to set"
        + (f" (resuming after {cursor})" if cursor else "")
        + f"; at WECOM_RATE_LIMIT_PER_MIN={limits.per_min} / WECOM_RATE_LIMIT_PER_HOUR={limits.per_hour} "
        f"that takes about {minutes(estimate_seconds(todo, limits))} "
        f"(100,000 members: about {minutes(estimate_seconds(100_000, limits))})",
        file=out,
    )
    started, done = time.monotonic(), total - todo
    counts = {"set": 0, "unchanged": 0, "refused": 0, "skipped": 0}
    while True:
        chunk = [u for (u,) in members.where(User.userid > cursor).order_by(User.userid).limit(CHUNK).tuples()]
        if not chunk:
            break
        for _attempt in range(tries):
            result = refresh.set_tiles(s, client, chunk, force=True)
            if not result.paused:
                break
            print(f"\n  WeCom unreachable or rate limited ({result.paused}); retrying in {pause:.0f} s", file=out)
            time.sleep(pause)
            stale = WorkbenchTile.select(WorkbenchTile.userid).where(
                WorkbenchTile.userid.in_(chunk),
                WorkbenchTile.dirty == True,  # noqa: E712
            )
            chunk = [r.userid for r in stale]
        else:
            print(
                f"\nwqbot workbench fill: stopped after {tries} tries; run it again to resume after {cursor or 'the start'}",
                file=out,
            )
            return 1
        for k, v in result.as_dict().items():
            counts[k] += v
        cursor = chunk[-1]
        refresh._put(FILL_CURSOR_KEY, cursor)
        done += len(chunk)
        _bar(done, total, started, out)
    refresh._put(FILL_CURSOR_KEY, "")
    print(f"\nwqbot workbench fill: done in {minutes(time.monotonic() - started)}: {json.dumps(counts)}", file=out)
    if counts["refused"]:
        print("  some tiles were refused: see the log (set_workbench_data refused …) or /admin", file=out)
        return 1
    return 0
