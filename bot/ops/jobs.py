"""Work the console starts that must not run inside a web request."""

from __future__ import annotations

import logging

from bot.tasks import huey

log = logging.getLogger("wqbot.ops")


@huey.task(name="ops.sync_now")
def sync_now(full: bool = True) -> int | None:
    """ "立即同步": one reconciliation through the directory capability's public entry point."""
    from bot.ops.status import record_error
    from bot.sync import run_sync
    from settings import get_settings

    try:
        from bot.sync.lease import Busy
    except ImportError:  # pragma: no cover - older sync builds
        Busy = ()
    try:
        run = run_sync(get_settings(), trigger="admin", full=full)
    except Busy as e:
        log.info("sync now: another run is in progress (%s)", e)
        return None
    except Exception as e:
        record_error("sync", f"{type(e).__name__}: {e}", getattr(e, "hint", ""))
        raise
    return run.id
