"""Where the CPU of one callback goes, per stage: a CPU-time sampler (`Sampler`, SIGPROF) samples
the in-process path (bench/callback.py's ASGI client calling what `wqbot serve` serves, 64
callbacks in flight) and every sample is charged to a stage by the frames on its stack:

    http        uvicorn, httptools, uvloop's Python side, the header and body time limits
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

The innermost frame that names a stage decides it, except that store work is charged by the
nearest enclosing frame that is not store code (a handler's: store ·handler; the outbox's or
huey's: enqueue; else store ·delivery), and crypto and logging always win.
The benchmark's own ASGI client is left out. The report gives each stage's share of the samples
and applies it to the CPU µs per callback measured without the sampler in the same run. In-process, the HTTP stage is only the body time
limit (no server): bench/callback.py adds the no-op floor's CPU per request, and samples the
embedded server itself under wrk (bench/sampled_serve.py), where the http stage is uvicorn's.
"""

from __future__ import annotations

import signal
import sysconfig
from pathlib import Path
from typing import Any

STAGES = (
    "http",
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
    parts = p.parts
    if "site-packages" in parts:  # first: a venv may sit inside the checkout
        return "site:" + "/".join(parts[parts.index("site-packages") + 1 :])
    try:
        return p.resolve().relative_to(code_root).as_posix()
    except ValueError:
        pass
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
    if where in ("bot/cli.py", "bot/app.py", "bot/server/commands.py", "bot/server/__init__.py"):
        return None  # the process's outermost frames (`wqbot serve`), not a stage
    if where.startswith(("site:uvicorn/", "site:httptools/", "site:uvloop/", "site:h11/")) or where in (
        "bot/server/header_timeout.py",
        "bot/server/body_timeout.py",
        "bot/server/one_write.py",
        "bot/header_timeout.py",
        "bot/body_timeout.py",
    ):
        return "http"
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
    if where.startswith("site:starlette/"):
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
    if inner == "store":  # whose store work: the nearest enclosing frame that is not store code says
        caller = next((m for m in reversed(marks) if m != "store"), None)
        if caller == "handler":
            return "store ·handler"
        if caller == "enqueue":
            return "enqueue"
        return "store ·delivery"
    if inner == "loop" or inner == "bench":
        return "group commit / loop"
    return inner


class Sampler:
    """A CPU-time sampling profiler: SIGPROF every `interval` seconds of this process's CPU time
    (ITIMER_PROF), the interrupted frame's stack charged to a stage. Unlike a tracing profiler
    (cProfile, or pyinstrument's per-call hook) it adds nothing to each call, so call-heavy code
    (peewee) is not inflated against C-heavy code (AES, expat); the cost is per sample only.
    The signal is handled between two bytecodes of the main thread: time inside a C call is
    charged to the Python frame that made it, and CPU of other threads (the log writer, the
    PostgreSQL store thread) to whatever the main thread runs then."""

    def __init__(self, code_root: Path, interval: float = 0.0005):
        self.code_root, self.interval = code_root, interval
        self.counts: dict[str, int] = {}
        self.where: dict[str, dict[str, int]] = {}  # stage → the sampled frame's file:function → samples
        self._marks: dict[object, str | None] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        marks, cache, leaf = [], self._marks, frame
        while frame is not None:
            code = frame.f_code
            m = cache.get(code, "?")
            if m == "?":
                m = cache[code] = marker(_where(code.co_filename, self.code_root), code.co_name)
            if m:
                marks.append(m)
            frame = frame.f_back
        marks.reverse()
        stage = stage_of(marks)
        self.counts[stage] = self.counts.get(stage, 0) + 1
        if leaf is not None:
            name = f"{_where(leaf.f_code.co_filename, self.code_root)}:{leaf.f_code.co_name}"
            funcs = self.where.setdefault(stage, {})
            funcs[name] = funcs.get(name, 0) + 1

    def top(self, stage: str, n: int = 3) -> list[tuple[str, int]]:
        """The functions most often sampled in a stage (the frame running, not its callers)."""
        return sorted(self.where.get(stage, {}).items(), key=lambda kv: -kv[1])[:n]

    def start(self) -> None:
        self._old = signal.signal(signal.SIGPROF, self._handler)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, self._old)

    def run(self, fn: Any) -> None:
        self.start()
        try:
            fn()
        finally:
            self.stop()


def profile(runs: Any, code_root: Path, samples: int = 3000) -> tuple[dict[str, float], Sampler]:
    """Each of `runs` (callables) under the sampler until `samples` were taken; the share of the
    samples per stage (the benchmark's own client left out, their number under "_samples"), and
    the sampler (its `top()` per stage). SIGPROF comes with the kernel's tick (every 4 ms of CPU at
    250 Hz), whatever the interval asked for: the number of samples is what to watch."""
    sampler = Sampler(code_root)
    for run in runs:
        sampler.run(run)
        if sum(sampler.counts.values()) >= samples:
            break
    return shares_of(sampler.counts), sampler


def shares_of(counts: dict[str, int]) -> dict[str, float]:
    counts = dict(counts)
    counts.pop("bench", None)
    total = sum(counts.values()) or 1
    shares: dict[str, float] = {stage: counts.get(stage, 0) / total for stage in STAGES}
    shares["_samples"] = total
    return shares
