"""Open-loop, rate-limited callback load for bench/soak.py (wrk has no rate limit; wrk2 is not
packaged here).

Callback i is due at t0 + i / rate whatever happened to the ones before it, and its latency is
counted from that intended time, not from when a connection was free to send it: a server that
stalls for 200 ms shows 200 ms on every callback that fell due meanwhile, instead of on one
(coordinated omission). The service time (from the actual send) is kept too.

Each callback is a unique, signed `help` click built by bench/callback.py (`click_plain` + `sign`),
all signed before the clock starts (~20 µs each: signing during the run would take CPU from the
server on this 2-core machine; ~0.8 KB each in memory). Connections are HTTP/1.1 keep-alive, one
request in flight each, used in turn. Prints "started <unix time of callback 0>" on stdout when the
clock starts, so the caller can line other events up with it.

    python -m bench.soak_load --port 8000 --rate 2000 --duration 60 --out /tmp/run

writes OUT/meta.json (salt, t0, counts, per-10 s windows, CPU) and OUT/status.bin (one byte per
callback: see STATUS), OUT/latency.bin and OUT/service.bin (float64 seconds, NaN when unanswered).
bench/soak.py recomputes each delivery key from the salt and checks it in the store.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import math
import os
import re
import resource
import secrets
import socket
import sys
import time
from collections import Counter, deque
from pathlib import Path
from urllib.parse import urlencode

from bench.callback import CORP, ENV, click_plain, sign

# one byte per callback
UNSENT, OK, NON200, TIMEOUT, CONN_ERROR = 0, 1, 2, 3, 4
STATUS = {UNSENT: "not sent", OK: "200", NON200: "non-200", TIMEOUT: "timeout", CONN_ERROR: "connection error"}
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)


class Conn(asyncio.Protocol):
    def __init__(self, gen: "Generator"):
        self.gen = gen
        self.transport = None
        self.buf = b""
        self.current: int | None = None  # the callback in flight
        self.sent_at = 0.0
        self.dead = False

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, i: int, data: bytes) -> None:
        self.current, self.sent_at, self.buf = i, time.perf_counter(), b""
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0 or self.current is None:
            return
        m = _LENGTH.search(self.buf, 0, head_end + 2)
        if len(self.buf) < head_end + 4 + (int(m.group(1)) if m else 0):
            return
        status = int(self.buf[9:12])
        self.buf = b""
        i, self.current = self.current, None
        self.gen.answered(self, i, status)

    def connection_lost(self, exc):
        self.dead = True
        self.gen.lost(self)


class Generator:
    def __init__(self, host: str, port: int, rate: float, duration: float, connections: int, timeout: float):
        from bot.crypto import WeComCrypto

        self.host, self.port, self.rate, self.timeout = host, port, rate, timeout
        self.total = int(rate * duration)
        self.connections = connections
        self.crypto = WeComCrypto(ENV["WECOM_TOKEN"], ENV["WECOM_AES_KEY"], CORP)
        self.salt = secrets.token_hex(3)
        self.status = bytearray(self.total)
        self.latency = array.array("d", [math.nan]) * self.total
        self.service = array.array("d", [math.nan]) * self.total
        self.codes: Counter[int] = Counter()
        self.idle: deque[Conn] = deque()
        self.busy: set[Conn] = set()
        self.backlog: deque[int] = deque()
        self.t0 = 0.0
        self.reconnects = 0
        self.max_backlog = 0
        self.stopping = False
        self.ok_count = 0
        self.reported_ok = 0

    # -- requests ----------------------------------------------------------------------------
    def request(self, i: int) -> bytes:
        q, body = sign(self.crypto, click_plain(i, self.salt), i, self.salt)
        return (
            f"POST /wecom/callback?{urlencode(q)} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def prepare(self) -> None:
        self.requests = [self.request(i) for i in range(self.total)]

    def pump(self) -> None:
        while self.backlog and self.idle:
            conn = self.idle.popleft()
            if conn.dead:
                continue
            self.busy.add(conn)
            i = self.backlog.popleft()
            conn.send(i, self.requests[i])
            self.requests[i] = None

    # -- answers -----------------------------------------------------------------------------
    def answered(self, conn: Conn, i: int, status: int) -> None:
        now = time.perf_counter()
        self.latency[i] = now - (self.t0 + i / self.rate)
        self.service[i] = now - conn.sent_at
        self.status[i] = OK if status == 200 else NON200
        self.ok_count += status == 200
        if status != 200:
            self.codes[status] += 1
        self.busy.discard(conn)
        self.idle.append(conn)
        self.pump()

    def lost(self, conn: Conn) -> None:
        self.busy.discard(conn)
        if conn.current is not None and self.status[conn.current] == UNSENT:
            self.status[conn.current] = CONN_ERROR
        conn.current = None
        if not self.stopping:
            asyncio.get_running_loop().create_task(self.connect())

    def expire(self, now: float) -> None:
        for conn in list(self.busy):
            if conn.current is not None and now - conn.sent_at > self.timeout:
                self.status[conn.current] = TIMEOUT
                conn.current = None
                conn.transport.abort()  # connection_lost replaces it

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            try:
                _, conn = await loop.create_connection(lambda: Conn(self), self.host, self.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            self.reconnects += 1
            self.idle.append(conn)
            self.pump()
            return

    # -- the run -----------------------------------------------------------------------------
    async def run(self, progress_every: float = 10.0) -> None:
        await asyncio.gather(*(self.connect() for _ in range(self.connections)))
        self.reconnects = 0
        self.t0_wall = time.time() + 0.05
        self.t0 = time.perf_counter() + 0.05
        print(f"started {self.t0_wall}", flush=True)
        nxt, last_check, last_report, reported = 0, 0.0, self.t0, 0
        while nxt < self.total:
            now = time.perf_counter()
            due = min(self.total, int((now - self.t0) * self.rate) + 1) if now >= self.t0 else 0
            self.backlog.extend(range(nxt, due))
            nxt = max(nxt, due)
            self.max_backlog = max(self.max_backlog, len(self.backlog))
            self.pump()
            if now - last_check > 0.1:
                self.expire(now)
                last_check = now
            if now - last_report >= progress_every:
                self.progress(reported, nxt, now)
                reported, last_report = nxt, now
            # a timer tick of ≥ 1 ms (the event loop's resolution): whatever fell due meanwhile goes
            # out together, and its latency still counts from each one's own due time
            await asyncio.sleep(max(0.001, self.t0 + nxt / self.rate - time.perf_counter()))
        # the tail: what is queued still goes out, and what is in flight gets its full timeout
        deadline = time.perf_counter() + 2 * self.timeout + 5
        while (self.backlog or self.busy) and time.perf_counter() < deadline:
            self.pump()
            self.expire(time.perf_counter())
            await asyncio.sleep(0.01)
        self.stopping = True
        for conn in list(self.busy):
            if conn.current is not None:
                self.status[conn.current] = TIMEOUT
                conn.current = None
        for conn in list(self.idle) + list(self.busy):
            conn.transport.close()
        await asyncio.sleep(0.05)

    def progress(self, start: int, end: int, now: float) -> None:
        # the latency of those answered since the last line (by when they were due, they may be older)
        fresh = sorted(self.latency[i] for i in range(self.reported_ok, end) if self.status[i] == OK)
        self.reported_ok = end
        p99 = fresh[int(len(fresh) * 0.99)] * 1e3 if fresh else math.nan
        bad = sum(1 for s in self.status[:end] if s not in (OK, UNSENT))
        print(
            f"  load {now - self.t0:5.0f}s: {end:,} due, {self.ok_count:,} answered 200, {bad} errors, "
            f"backlog {len(self.backlog):,} (oldest due {self.lag(now):.1f}s ago), in flight {len(self.busy)}; "
            f"p99 of those due since the last line and answered: {p99:.1f} ms",
            file=sys.stderr,
            flush=True,
        )

    def lag(self, now: float) -> float:
        return now - (self.t0 + self.backlog[0] / self.rate) if self.backlog else 0.0

    def windows(self, seconds: float = 10.0) -> list[dict]:
        """Per window of intended send times: count, 200s, p50/p99 (ms)."""
        out, per = [], max(1, int(self.rate * seconds))
        for start in range(0, self.total, per):
            idx = range(start, min(self.total, start + per))
            lat = sorted(self.latency[i] for i in idx if self.status[i] == OK)
            out.append(
                {
                    "t": round(start / self.rate, 1),
                    "n": len(idx),
                    "ok": len(lat),
                    "p50": lat[len(lat) // 2] * 1e3 if lat else None,
                    "p99": lat[int(len(lat) * 0.99)] * 1e3 if lat else None,
                }
            )
        return out


def _loop():
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rate", type=float, required=True, help="callbacks per second")
    p.add_argument("--duration", type=float, required=True, help="seconds")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--timeout", type=float, default=5.0, help="seconds before a callback counts as timed out")
    p.add_argument("--out", required=True, help="a directory for the results")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gen = Generator(args.host, args.port, args.rate, args.duration, args.connections, args.timeout)
    gen.prepare()
    with asyncio.Runner(loop_factory=_loop) as runner:
        runner.run(gen.run())
    usage = resource.getrusage(resource.RUSAGE_SELF)
    counts = Counter(gen.status)
    meta = {
        "salt": gen.salt,
        "rate": gen.rate,
        "total": gen.total,
        "t0_wall": gen.t0_wall,
        "connections": gen.connections,
        "timeout": gen.timeout,
        "counts": {STATUS[k]: counts.get(k, 0) for k in STATUS},
        "codes": dict(gen.codes),
        "reconnects": gen.reconnects,
        "max_backlog": gen.max_backlog,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "windows": gen.windows(),
    }
    (out / "meta.json").write_text(json.dumps(meta))
    (out / "status.bin").write_bytes(bytes(gen.status))
    with (out / "latency.bin").open("wb") as f:
        gen.latency.tofile(f)
    with (out / "service.bin").open("wb") as f:
        gen.service.tofile(f)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
