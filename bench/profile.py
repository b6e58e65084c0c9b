"""Where the CPU of one callback goes, per stage: pyinstrument samples the in-process path
(bench/callback.py's ASGI client calling what `wqbot serve` serves, 64 callbacks in flight) and
every sample is charged to a stage by the frames on its stack:

    crypto      bot/crypto, pycryptodome: signature, decryption, the reply's encryption
    parse       the query string, the body, the XML (envelope and plaintext), the Inbound
    routing     the fast path and the router's resolve()
    handler     bot/handlers and the capability code it calls (notify, sync, auth…)
    store ·handler   the handler's reads and writes (peewee, sqlite3/psycopg2)
    store ·delivery  the delivery key, the transaction and its commit
    enqueue     the outbox and huey (deferred work), after the commit
    reply       the passive reply's XML, the response messages
    observability   logging, metrics, trace ids
    group commit / loop   the group-commit engine, asyncio/uvloop, context copies
    endpoint    the endpoint's own code (the delivery key's sha1, the checks), the ASGI layers

The innermost frame that names a stage decides it, except that store work belongs to the nearest
enclosing handler (store ·handler) or enqueue (enqueue) frame, and crypto and logging always win.
The benchmark's own ASGI client is left out. A sampling profiler slows what it samples unevenly,
so the report gives each stage's share of the samples and applies it to the CPU µs per callback
measured without the profiler in the same run. The HTTP stage (what the server side of a
request costs) is not in this path: bench/callback.py takes it from the no-op floor.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path
from typing import Any

STAGES = (
    "parse",
    "crypto",
    "routing",
    "handler",
    "store ·handler",
    "store ·delivery",
    "enqueue",
    "reply",
    "observability",
    "group commit / loop",
    "endpoint",
)
_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def _where(file_path: str | None, code_root: Path) -> str:
    """A frame's file as 'bot/callback/xml.py', 'site:peewee.py', 'std:asyncio/…' or ''."""
    if not file_path or file_path.startswith("<"):
        return ""
    p = Path(file_path)
    try:
        return p.resolve().relative_to(code_root).as_posix()
    except ValueError:
        pass
    parts = p.parts
    if "site-packages" in parts:
        return "site:" + "/".join(parts[parts.index("site-packages") + 1 :])
    try:
        return "std:" + p.resolve().relative_to(_STDLIB).as_posix()
    except ValueError:
        return p.as_posix()


def marker(where: str, function: str) -> str | None:
    """The stage a frame names, or None (it takes its caller's)."""
    if not where:
        return None
    if where.startswith(("bot/crypto/", "site:Crypto/")) or function in ("encrypt_reply", "decrypt_message"):
        return "crypto"
    if where.startswith("bench/"):
        return "bench"
    if where.startswith(("bot/observability/", "std:logging/", "site:prometheus_client/")) or where in (
        "bot/logs.py",
        "bot/ops/metrics.py",
        "bot/ops/tracing.py",
    ):
        return "observability"
    if where in ("bot/callback/xml.py", "bot/xml.py") or where.startswith(("std:xml/", "std:urllib/")):
        return "parse"
    if function in ("query_params", "read_body") or (function == "__init__" and where.endswith("router.py")):
        return "parse"
    if where in ("bot/callback/router.py", "bot/router.py", "bot/callback/fast_path.py"):
        return "routing"
    if where in ("bot/callback/replies.py", "bot/replies.py") or function == "_send":
        return "reply"
    if where.startswith(("bot/queue/", "site:huey/")) or where == "bot/tasks.py":
        return "enqueue"
    if where.startswith(("site:peewee", "site:playhouse/", "site:psycopg2/", "std:sqlite3/", "store/")):
        return "store"
    if where in ("bot/callback/deliveries.py",) and function in ("_record", "_commit", "_insert_sql", "_names"):
        return "store"
    if where.startswith("bot/callback/group_commit") or where.startswith(("std:asyncio/", "std:concurrent/")):
        return "loop"
    if where.startswith("bot/handlers/") or (
        where.startswith("bot/")
        and not where.startswith(("bot/callback/", "bot/server/"))
        and where != "bot/callbacks.py"
    ):
        return "handler"
    if where.startswith(("bot/callback/", "bot/server/")) or where == "bot/callbacks.py":
        return "endpoint"
    if where.startswith(("site:starlette/", "site:uvicorn/")):
        return "endpoint"
    return None


def stage_of(marks: list[str]) -> str:
    """The stage of a sample from the markers on its stack, outermost first."""
    if "crypto" in marks:
        return "crypto"
    if "observability" in marks:
        return "observability"
    if "bench" in marks and marks[-1] == "bench":
        return "bench"
    inner = marks[-1] if marks else "loop"
    if inner == "store":
        for m in reversed(marks):
            if m == "handler":
                return "store ·handler"
            if m == "enqueue":
                return "enqueue"
        return "store ·delivery"
    if inner == "loop" or inner == "bench":
        return "group commit / loop"
    return inner


def charge(root: Any, code_root: Path) -> dict[str, float]:
    """Seconds per stage over a pyinstrument frame tree."""
    out: dict[str, float] = {}

    def walk(frame: Any, marks: list[str]) -> None:
        m = marker(_where(frame.file_path, code_root), frame.function or "")
        here = marks + [m] if m else marks
        own = frame.total_self_time if not frame.children else frame.total_self_time
        if own:
            stage = stage_of(here)
            out[stage] = out.get(stage, 0.0) + own
        for child in frame.children:
            walk(child, here)

    walk(root, [])
    return out


def profile(run: Any, code_root: Path, interval: float = 0.0002) -> dict[str, float]:
    """run() under pyinstrument; the share of the samples per stage (the benchmark's own client
    left out), and the profiled seconds under "_total"."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=interval, async_mode="disabled")
    profiler.start()
    try:
        run()
    finally:
        session = profiler.stop()
    seconds = charge(session.root_frame(), code_root)
    seconds.pop("bench", None)
    total = sum(seconds.values()) or 1.0
    shares = {stage: seconds.get(stage, 0.0) / total for stage in STAGES}
    shares["_total"] = total
    return shares
