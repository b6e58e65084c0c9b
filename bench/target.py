"""The code under test: this checkout's, or another checkout's (`bench/callback.py --root PATH`).

The benchmark stays the same while the code it measures changes: the before/after figures of a
restructuring run this file's benchmark against both trees. The two layouts it knows:

- "package" (from the architecture pass on): bot/callback/ (endpoint, fast path, router,
  replies, xml), bot/server/ (`stack()`, the `asgi_app` factory), bot/observability/logs.py;
- "flat" (before it): bot/callbacks.py, bot/router.py, bot/replies.py, bot/xml.py, bot/logs.py,
  and the `asgi_app` factory in bot/cli.py.

`CODE_ROOT` is read from WQBOT_BENCH_ROOT (bench/callback.py sets it and re-runs itself with the
target's own venv); the project's modules are imported from there, `bench` from this tree.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

BENCH_ROOT = Path(__file__).resolve().parents[1]
CODE_ROOT = Path(os.environ.get("WQBOT_BENCH_ROOT") or BENCH_ROOT).resolve()
if str(CODE_ROOT) not in sys.path[:1]:
    sys.path.insert(0, str(CODE_ROOT))


def layout() -> str:
    return "package" if importlib.util.find_spec("bot.callback") is not None else "flat"


def _module(package: str, flat: str) -> Any:
    return importlib.import_module(package if layout() == "package" else flat)


def served_app() -> Any:
    """What `wqbot serve` serves, built by the tree's own uvicorn factory (the callback fast path
    and the body time limit in front of create_app(); the heap frozen)."""
    return _module("bot.server.commands", "bot.cli").asgi_app()


def replies() -> Any:
    return _module("bot.callback.replies", "bot.replies")


def callback_parts() -> tuple[Any, Any, Any]:
    """(CallbackEndpoint, CallbackFastPath, Router) of the tree."""
    endpoint = _module("bot.callback", "bot.callbacks")
    router = _module("bot.callback.router", "bot.router")
    return endpoint.CallbackEndpoint, endpoint.CallbackFastPath, router.Router


def logs() -> Any:
    return _module("bot.observability.logs", "bot.logs")


def commit() -> str:
    """The checked-out commit of CODE_ROOT (and '+changes' when its tree differs from it)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(CODE_ROOT), *args], capture_output=True, text=True).stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "bot", "store", "settings.py")
    return head + ("+changes" if dirty else "")


def commit_of(root: Path) -> str:
    import subprocess

    out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "?"
