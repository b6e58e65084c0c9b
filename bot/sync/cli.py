"""`wqbot sync [--full] [--force]`: one directory reconciliation now, with progress and a summary.

Exit codes: 0 done; 1 the run failed or another run holds the lease; 2 bad usage or settings;
3 disables were held back by a guard (see the summary for why and how to override).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time

from tqdm import tqdm

from bot.observability import logs
from settings import get_settings
from store import clock, db, init_store
from store.directory import SyncRunStatus, User

from .lease import Busy
from .reconcile import SyncDisabled, run_sync


class Progress:
    """The sync's progress on stderr: a tqdm bar per stage on a terminal (log records are written
    above it, not through it), else a plain line per stage and every PLAIN_EVERY seconds, so a long sync adds a few lines to a log, not hundreds."""

    PLAIN_EVERY = 30.0  # off a terminal (journald, a file): a line per stage and at most two a minute

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.stage: str | None = None
        self.bar: tqdm | None = None
        self.last = 0.0
        self.started = time.monotonic()
        self._redirect = contextlib.ExitStack()
        if self.tty:
            self._redirect.enter_context(logs.writing_through(lambda line: tqdm.write(line, file=self.stream)))

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if self.tty:
            if stage != self.stage or self.bar is None:
                if self.bar is not None:
                    self.bar.close()
                self.bar = tqdm(total=total, desc=f"{stage:<11}", file=self.stream, mininterval=0.1, leave=True)
                self.stage = stage
            if total is not None and self.bar.total != total:
                self.bar.total = total
            self.bar.update(done - self.bar.n)
            return
        now = time.monotonic()
        if stage == self.stage and now - self.last < self.PLAIN_EVERY and done != total:
            return
        self.stage, self.last = stage, now
        line = f"{stage:<11} {done}/{total}" if total else f"{stage:<11} {done}"
        self.stream.write(f"{line}  {now - self.started:5.1f}s\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self._redirect.close()


def summary(run) -> str:
    d = run.as_dict()
    took = (d["finished_at"] or clock.now()) - d["started_at"]
    calls = d["api_calls"] or {}
    lines = [
        f"directory sync #{d['id']}: {d['status']} in {took:.1f}s ({d['mode'] or '—'} mode"
        + (", full" if d["full"] else "")
        + (", forced" if d["forced"] else "")
        + ")",
    ]
    if d["status"] == SyncRunStatus.FAILED and not d["users_seen"]:
        # it read nothing: say so, and what the store still holds, rather than "0 seen"
        lines.append(
            f"  users        not read; the store keeps its {User.select().count()} members "
            f"({User.select().where(User.active).count()} active) unchanged"
        )
    else:
        lines += [
            f"  users        {d['users_seen']} seen: {d['created']} created, {d['updated']} updated, "
            f"{d['renamed']} renamed, {d['disabled']} disabled, {d['reactivated']} reactivated",
            f"  departments  {d['departments_seen']} seen: {d['departments_created']} created, "
            f"{d['departments_updated']} updated, {d['departments_disabled']} disabled",
        ]
    lines.append(
        f"  rows written {d['rows_written']}; API calls {sum(calls.values())} "
        + ("(" + ", ".join(f"{k} {v}" for k, v in sorted(calls.items())) + ")" if calls else "")
    )
    if d["held_disables"]:
        lines.append(f"  held back    {d['held_disables']} disables")
    for r in (d["reason"] or "").splitlines():
        lines.append(f"  why: {r}")
    for w in d["warnings"]:
        lines.append(f"  warning: {w}")
    for e in d["errors"][:10]:
        lines.append(f"  error: {e}")
    return "\n".join(lines)


def main(args) -> int:

    full, force = bool(getattr(args, "full", False)), bool(getattr(args, "force", False))
    if force and not full:
        print("wqbot sync: --force only goes with --full (wqbot sync --full --force)", file=sys.stderr)
        return 2
    s = get_settings()
    if db.obj is None:  # (already bound when called in-process, e.g. by tests)
        init_store(s.database_url)
    progress = Progress()
    try:
        run = run_sync(s, trigger="cli", full=full, force=force, progress=progress)
    except Busy as e:
        progress.close()
        print(f"wqbot sync: {e}; try again when it has finished", file=sys.stderr)
        return 1
    except SyncDisabled as e:
        progress.close()
        print(f"wqbot sync: {e}", file=sys.stderr)
        return 2
    progress.close()
    print(summary(run))
    if getattr(args, "json", False):
        print(json.dumps(run.as_dict(), ensure_ascii=False))
    if run.status == SyncRunStatus.FAILED:
        return 1
    if run.status == SyncRunStatus.HELD:
        return 3
    return 0
