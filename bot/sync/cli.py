"""`wqbot sync [--full] [--force]`: one directory reconciliation now, with progress and a summary.

Exit codes: 0 done; 1 the run failed or another run holds the lease; 2 bad usage or settings;
3 disables were held back by a guard (see the summary for why and how to override).
"""

from __future__ import annotations

import json
import sys
import time

from settings import get_settings
from store import clock, db, init_store
from store.directory import SyncRunStatus

from .lease import Busy
from .reconcile import SyncDisabled, run_sync


class Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    WIDTH = 28

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.stage = None
        self.last = 0.0
        self.started = time.monotonic()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        changed = stage != self.stage
        if not changed and now - self.last < (0.1 if self.tty else 5.0) and done != total:
            return
        if changed and self.stage is not None and self.tty:
            self.stream.write("\n")
        self.stage, self.last = stage, now
        if total:
            filled = int(self.WIDTH * min(done, total) / total)
            bar = "█" * filled + "·" * (self.WIDTH - filled)
            line = f"{stage:<11} [{bar}] {done}/{total}"
        else:
            line = f"{stage:<11} {done}"
        line += f"  {now - self.started:5.1f}s"
        if self.tty:
            self.stream.write("\r" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.stage is not None:
            self.stream.write("\n")
            self.stream.flush()


def summary(run) -> str:
    d = run.as_dict()
    took = (d["finished_at"] or clock.now()) - d["started_at"]
    calls = d["api_calls"] or {}
    lines = [
        f"directory sync #{d['id']}: {d['status']} in {took:.1f}s ({d['mode'] or '—'} mode"
        + (", full" if d["full"] else "")
        + (", forced" if d["forced"] else "")
        + ")",
        f"  users        {d['users_seen']} seen: {d['created']} created, {d['updated']} updated, "
        f"{d['renamed']} renamed, {d['disabled']} disabled, {d['reactivated']} reactivated",
        f"  departments  {d['departments_seen']} seen: {d['departments_created']} created, "
        f"{d['departments_updated']} updated, {d['departments_disabled']} disabled",
        f"  rows written {d['rows_written']}; API calls {sum(calls.values())} "
        + ("(" + ", ".join(f"{k} {v}" for k, v in sorted(calls.items())) + ")" if calls else ""),
    ]
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
